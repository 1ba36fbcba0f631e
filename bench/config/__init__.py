"""Config: compose it (Hydra over conf/), check it (plain checks, torch-free), and plan a run from it."""
