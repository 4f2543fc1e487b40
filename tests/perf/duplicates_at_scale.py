"""`label-images duplicates` on a million synthetic embeddings with planted near-duplicates
(tests/fixtures/synthetic_embeddings.py): recall of the planted pairs, time and peak memory;
also one `similar` query and the report's aggregation over every row.
Not part of CI (minutes, 5 GB of disk).

  python tests/perf/duplicates_at_scale.py [--images 1000000] [--planted 5000] [--keep DIR]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests', 'fixtures')]

from measure import run_measured  # pylint: disable=wrong-import-position
from pipeline.output_dir import DUPLICATES_FILE, INDEX_DIR  # pylint: disable=wrong-import-position
from synthetic_embeddings import write_output  # pylint: disable=wrong-import-position


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
  parser.add_argument('--images', type=int, default=1_000_000)
  parser.add_argument('--planted', type=int, default=5_000)
  parser.add_argument('--keep', help='write the output here and keep it')
  args = parser.parse_args()
  output_dir = args.keep or tempfile.mkdtemp(prefix='duplicates-at-scale-')
  os.makedirs(output_dir, exist_ok=True)
  try:
    planted_pairs = write_output(output_dir, args.images, args.planted)
    run = run_measured([sys.executable, '-m', 'pipeline.run', 'duplicates', output_dir],
                       cwd=ROOT)
    if run.exit_code:
      raise SystemExit(run.output)
    query = next(iter(planted_pairs))
    search = run_measured([sys.executable, '-m', 'pipeline.run', 'similar', output_dir,
                           '--uri', query, '--k', '1', '--json'], cwd=ROOT)
    # The report's aggregation over every row (its ~100 thumbnails cost the same at any size).
    aggregation = run_measured([sys.executable, '-c', 'import sys; from pipeline import '
                                'label_stats, results; label_stats.label_stats('
                                'results.label_parts(sys.argv[1]), 0.5)', output_dir], cwd=ROOT)
    found = pq.read_table(os.path.join(output_dir, DUPLICATES_FILE)).to_pylist()
    group_of = {row['uri']: row['group'] for row in found}
    recalled = sum(1 for copy, source in planted_pairs.items()
                   if copy in group_of and group_of[copy] == group_of.get(source))
    planted_uris = set(planted_pairs) | set(planted_pairs.values())
    print(run.output.strip())
    print(json.dumps({
        'images': args.images,
        'planted_pairs': len(planted_pairs),
        'recall': round(recalled / len(planted_pairs), 4),
        'images_grouped_not_planted': sum(1 for uri in group_of if uri not in planted_uris),
        'seconds': round(run.seconds, 1),
        'peak_rss_mb': round(run.peak_rss_mb),
        'similar_seconds': round(search.seconds, 1),
        'similar_peak_rss_mb': round(search.peak_rss_mb),
        'similar_found_the_source': planted_pairs[query] in search.output,
        'report_aggregation_seconds': round(aggregation.seconds, 1),
        'report_aggregation_peak_rss_mb': round(aggregation.peak_rss_mb),
        'index_mb': round(os.path.getsize(
            os.path.join(output_dir, INDEX_DIR, 'embeddings.faiss')) / 2**20),
    }, indent=2))
  finally:
    if not args.keep:
      shutil.rmtree(output_dir)


if __name__ == '__main__':
  main()
