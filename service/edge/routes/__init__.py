"""The edge's routes, one module per group: hooks (discovery and service calls), feedback, ops."""
