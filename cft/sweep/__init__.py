"""Sweeps: a grid of recipe overrides run as one managed SkyPilot job per combination (or one after another on this
machine), one record in the bucket, one table, and one notification when the last member ends.

    grid.py       the grid (`--grid key=a,b` or a sweep file) and its members, each with a run id
    record.py     `<bucket>/sweeps/<name>.json` and the markers beside it, written with conditional writes
    sky_cli.py    SkyPilot's own CLI, in its own environment: launch, queue, cancel, an offline price
    launcher.py   launch and resume: members beyond --max-parallel wait for a free slot
    local.py      --local: `cft train` then `cft eval` per member on this machine
    status.py     each member's state and numbers, the table and the plot
    announce.py   a member's end, and the one notification for the sweep's end
"""
