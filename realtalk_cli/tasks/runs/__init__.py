"""What every model run shares: its settings checked, its identity and manifest, its rows and reports, and
the run record of batch runs. Run folders themselves (lock, resume, atomic writes) are in `fileio.py`.
"""
