"""A mutation fuzzer for GGUF model files (``benches/fuzz_gguf.py`` is its command line).

``gguf_struct`` parses and writes GGUF files, ``mutate`` makes mutants from a seed, ``child``
runs a batch of them (load, tokenize, generate with MTP) in one process, ``runner`` runs batches
in child processes and isolates the mutant that killed one, ``base`` builds the small synthetic
models the mutants start from, ``report`` summarises a run.
"""
