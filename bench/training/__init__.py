"""Training: the seeded long-dependency tasks and the one trainer that trains every
trainable implementation."""
