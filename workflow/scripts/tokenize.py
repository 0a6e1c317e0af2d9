from rankbits.data import tokenize_split
from rankbits.modeling import load_tokenizer
from rankbits.workflow import logged

with logged(snakemake):
    tokenizer = load_tokenizer(snakemake.wildcards.model, snakemake.params.model_options)
    tokenize_split(snakemake.input[0], snakemake.output[0], tokenizer, snakemake.params.max_length)
