"""Rules of the card contract, one function per rule code."""
