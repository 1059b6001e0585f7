"""Scale-out runners: split a build into units, run them on Ray workers, merge the results.

``ray_atlas`` builds an atlas from units (partial atlases) merged with the atlas's exact,
associative merge; ``ray_dump`` computes a dump's shards on workers while the driver owns the run
folder. No math of their own, so the result is one process's bytes. ``pool`` hands tasks to
actors and resubmits those lost with a killed worker; ``units`` lays out the staging folder.
"""
