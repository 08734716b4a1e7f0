"""Model backends behind one interface (`arc25.backends.base.Backend`)."""
