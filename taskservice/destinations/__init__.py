"""Destinations: where destination records go. One module per kind (queue, kafka, function, webhook), the record
format in record.py, and registry.py mapping a URI to its client."""
