"""Simulate sequencing reads for one sample (deterministic: seeded by the sample name)."""
import random
import zlib

sample = snakemake.wildcards.sample  # noqa: F821 (set by Snakemake)
rng = random.Random(zlib.crc32(sample.encode()))
# each tissue has its own base composition, so the k-mer profiles differ
weights = {"liver": (3, 2, 2, 3), "brain": (2, 3, 3, 2), "muscle": (1, 1, 1, 1)}.get(sample, (1, 1, 1, 1))
with open(snakemake.output[0], "w") as out:  # noqa: F821
    for i in range(snakemake.params.n):  # noqa: F821
        read = "".join(rng.choices("ACGT", weights=weights, k=snakemake.params.length))  # noqa: F821
        out.write(f">{sample}_{i}\n{read}\n")
