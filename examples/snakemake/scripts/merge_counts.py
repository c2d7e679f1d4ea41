"""Merge the per-sample k-mer tables into one matrix.

It checks the memory its job was given, as a real tool would run out of it: with less than
``params.needs_mb`` it fails (deterministically), and Snakemake's ``--retries`` runs it again with the
memory the rule asks for on the next attempt.
"""
import sys

got = int(snakemake.resources.mem_mb)  # noqa: F821 (set by Snakemake)
needs = int(snakemake.params.needs_mb)  # noqa: F821
with open(snakemake.log[0], "a") as log:  # noqa: F821
    log.write(f"mem_mb={got}, needs {needs}\n")
if got < needs:
    print(f"merge_counts: out of memory: merging {len(snakemake.input)} samples needs {needs} MB, "  # noqa: F821
          f"this job has mem_mb={got}", file=sys.stderr)
    sys.exit(1)

table = {}
samples = list(snakemake.params.samples)  # noqa: F821
for sample, path in zip(samples, snakemake.input):  # noqa: F821
    with open(path) as f:
        for line in f:
            kmer, n = line.split()
            table.setdefault(kmer, {})[sample] = int(n)
with open(snakemake.output[0], "w") as out:  # noqa: F821
    out.write("kmer\t" + "\t".join(samples) + "\n")
    for kmer in sorted(table):
        out.write(kmer + "\t" + "\t".join(str(table[kmer].get(s, 0)) for s in samples) + "\n")
