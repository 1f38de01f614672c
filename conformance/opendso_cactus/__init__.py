"""cactus-client admin plugin for OpenDSO (entry-point group ``cactus_client.admin``)."""
