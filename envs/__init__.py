"""The DAT task as Gymnasium environments."""
