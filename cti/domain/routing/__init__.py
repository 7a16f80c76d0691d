"""Routing by skill and load: model, pure router, relaxation, strategies, decision records."""
