"""The bottom layer: helpers about modules and model inputs/outputs that every other layer may use.

Nothing here imports another part of tpp except :mod:`tpp.errors`.
"""
