"""Count the k-mers of one sample's reads (canonical counting is left out: it is an example)."""
from collections import Counter

k = snakemake.params.k  # noqa: F821 (set by Snakemake)
counts = Counter()
with open(snakemake.input[0]) as reads:  # noqa: F821
    for line in reads:
        if line.startswith(">"):
            continue
        seq = line.strip()
        counts.update(seq[i:i + k] for i in range(len(seq) - k + 1))
with open(snakemake.output[0], "w") as out:  # noqa: F821
    for kmer, n in sorted(counts.items()):
        out.write(f"{kmer}\t{n}\n")
