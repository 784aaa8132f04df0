"""The queue consumer: dynamic batching, staleness policy, recovery, publishing.

Built with the live pipeline (see DESIGN.md); it may import ``captioner``, never ``stream``.
"""
