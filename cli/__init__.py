"""The `filterviz` command (cli/main.py): render here, submit to a service, the atlas, the layers, the weights.

Its commands that talk to a service use client/ (requests only); those that render here use worker/'s engine.
"""
