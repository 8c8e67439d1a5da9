"""CDS Hooks services, cards and guideline knowledge: pure, never touches the network."""
