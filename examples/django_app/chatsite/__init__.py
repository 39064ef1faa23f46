"""A minimal Django project whose views chat with an agent that remembers each session."""
