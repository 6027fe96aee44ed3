"""Model families, one module each, registered by name in ``operators.models.registry``."""
