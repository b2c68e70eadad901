"""The built-in pruning methods, one per file; each module registers its methods when imported.

To add a method, add a module here that calls :func:`tpp.pruning.registry.register_method` (see
docs/extending.md); the registry imports every module of this package.
"""
