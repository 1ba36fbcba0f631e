"""Models: where weights come from (hub, local folder, offline asset, config-only) and the heads put on them."""
