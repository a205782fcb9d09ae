"""Event sources that feed the one submission path: Kafka topics through triggers (`taskservice ingest`)."""
