from rankbits.data import tokenize_split
from rankbits.modeling import load_tokenizer
from rankbits.models import MODELS
from rankbits.workflow import logged

with logged(snakemake):
    w = snakemake.wildcards
    tokenizer = load_tokenizer(w.model, snakemake.params.model_options)
    tokenize_split(snakemake.input[0], snakemake.output[0], tokenizer, snakemake.params.options, w.task,
                   MODELS.get(w.model).family.architecture, w.split)
