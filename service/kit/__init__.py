"""The integrator's kit: the ``mbc-cds-hooks`` command, fixture loader, signed hook client, explain view, dev keys."""
