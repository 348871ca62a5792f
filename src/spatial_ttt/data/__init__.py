"""Data: scene schema and readers, dense scene descriptions, spatial QA, synthetic scenes, SFT shards."""
