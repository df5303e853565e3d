"""Migration scripts of the serving state database, one per schema change, applied in order."""
