"""Exports: a read model exactly as of one log position, rendered as a file.

Producing the read model at a position is this side's work: rows that changed after the
position are rewound by replaying their events up to it with the projection's own code.
"""
