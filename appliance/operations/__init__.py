"""What runs against a live box in both modes: diagnostics and the console's service account on
Synapse.
"""
