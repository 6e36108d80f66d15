"""Admin operations (keys, users, usage, providers, audit) behind one interface, local or remote."""
