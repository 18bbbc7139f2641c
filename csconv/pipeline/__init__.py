"""The conversion run the command line and csconv.convert() share.

convert.py plans the shards and runs them; shards.py is one shard's work, workers.py the
worker processes and signals, resume.py the completion records `--resume` trusts,
output_folder.py what may be in --output_dir, manifest.py the manifest written last,
progress.py the progress line.
"""
