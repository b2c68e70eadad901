"""The built-in pruning methods, one per file; each module registers its methods when imported.

To add a method, add a module here whose pruner is decorated with
:func:`tpp.pruning.registry.pruning_method` (see docs/extending.md); the registry imports every module of
this package.
"""
