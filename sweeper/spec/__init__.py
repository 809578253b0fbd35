"""Stage 1, the spec: YAML with line origins (source), validation against the study's params (resolved), the
study's code hash (code_hash), expansion into the runs of a plan (plan). No Ray."""
