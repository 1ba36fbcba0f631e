"""Records: the run record (one JSON per run, the truth), its identity, claims and resume, the env, trackers."""
