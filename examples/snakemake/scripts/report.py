"""A short text report: GC content and the most frequent k-mers of each sample."""
samples = list(snakemake.params.samples)  # noqa: F821 (set by Snakemake)
gc = {}
for sample, path in zip(samples, snakemake.input.gc):  # noqa: F821
    with open(path) as f:
        gc[sample] = float(f.read())
rows = []
with open(snakemake.input.merged) as f:  # noqa: F821
    header = f.readline().split()
    for line in f:
        kmer, *counts = line.split()
        rows.append((kmer, [int(c) for c in counts]))
with open(snakemake.output[0], "w") as out:  # noqa: F821
    out.write(f"k-mer profiles of {len(samples)} samples, {len(rows)} distinct k-mers\n")
    for i, sample in enumerate(header[1:]):
        top = sorted(rows, key=lambda r: -r[1][i])[:3]
        out.write(f"{sample}\tGC={gc[sample]:.3f}\ttop: " + ", ".join(f"{k}={c[i]}" for k, c in top) + "\n")
