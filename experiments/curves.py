"""``dnc-curve``: a run's learning curve from its ``metrics.jsonl``, as a PNG.

    dnc-curve --run runs/babi-dnc1                         # bAbI defaults
    dnc-curve --run RUN --metrics valid/accuracy --out curve.png
    dnc-curve --run runs/babi-seeds                       # a sweep: S members
    dnc-curve --run runs/babi-seeds --member 2            # one member
    dnc-curve --run runs/shrdlu-cpu --table 4000          # text, no PNG

Plots each evaluation metric against the examples seen (training steps x
batch size, or the examples a curriculum counted), one panel per metric.
For a bAbI run the defaults are the mean validation error and the number
of failed tasks, as issue reports and the paper tabulate them. For a
sweep (``dnc-train --seeds S``) each member's curve is drawn thin, with the
mean over members and a ± 1 s.d. band (at the steps every member was
evaluated); ``--member M`` draws member ``M`` alone. A setting changed on
resume (``--allow-change``) is a dashed line labelled with its new value.

``--table N`` prints instead a Markdown table of the *training* lines'
metrics averaged over windows of ``N`` updates (steps ``[kN, (k+1)N)``):
the curve of a metric logged every few updates, too noisy to read line by
line. The default columns are Mini-SHRDLU's ``fraction`` and ``other``
(and their difference, the go-cue binding gauge) where the run logs them,
else ``loss``. On a sweep it prints one table per member, or member
``M``'s alone with ``--member M``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Dict, List, Optional, Sequence, Tuple

BABI_METRICS = ("valid/mean_error", "valid/failed_tasks")


def read_evaluations(run: pathlib.Path) -> List[Dict]:
  """The evaluation records of ``run/metrics.jsonl``, in order."""
  return read_records(run, "eval")


def read_records(run: pathlib.Path, kind: str) -> List[Dict]:
  """The records of ``run/metrics.jsonl`` of this ``kind``, in order."""
  path = run / "metrics.jsonl"
  if not path.is_file():
    raise FileNotFoundError(f"{run} has no metrics.jsonl")
  records = []
  for number, line in enumerate(path.read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as error:
      raise ValueError(f"{path}:{number}: not JSON ({error})") from None
    if record.get("kind") == kind:
      records.append(record)
  return records


def change_marks(changes: Sequence[Dict], batch_size: Optional[int]
                 ) -> List[Tuple[float, str]]:
  """``(examples seen, label)`` for each setting a resumed run changed
  (``--allow-change``: its ``change`` lines), e.g. ``learning_rate 0.0003``.
  """
  marks = []
  for record in changes:
    x = float(record["step"]) * (batch_size or 1)
    labels = []
    for text in record.get("changed", []):
      # "optimizer.learning_rate: saved 0.0001, now 0.0003"
      field, _, values = text.partition(":")
      new_value = values.rsplit("now", 1)[-1].strip()
      labels.append(f"{field.split('.')[-1]} {new_value}")
    marks.append((x, ", ".join(labels)))
  return marks


def batch_size_of(run: pathlib.Path) -> Optional[int]:
  """The run's batch size from ``settings.json`` or ``summary.json``."""
  for name in ("settings.json", "summary.json"):
    path = run / name
    if path.is_file():
      found = _find_key(json.loads(path.read_text()), "batch_size")
      if found is not None:
        return int(found)
  return None


def _find_key(tree, key):
  if isinstance(tree, dict):
    if key in tree and isinstance(tree[key], int):
      return tree[key]
    for value in tree.values():
      found = _find_key(value, key)
      if found is not None:
        return found
  return None


def curve(records: Sequence[Dict], metric: str, batch_size: Optional[int]
          ) -> Tuple[List[float], List[float]]:
  """``(examples seen, values)`` of ``metric`` over the evaluations."""
  xs, ys = [], []
  for record in records:
    if metric not in record:
      continue
    if "valid/examples_seen" in record:
      xs.append(float(record["valid/examples_seen"]))
    elif batch_size:
      xs.append(float(record["step"]) * batch_size)
    else:
      xs.append(float(record["step"]))
    ys.append(float(record[metric]))
  return xs, ys


def members_of(records: Sequence[Dict]) -> List[int]:
  """The sweep members the records name (``[]``: not a sweep)."""
  return sorted({int(r["member"]) for r in records if "member" in r})


def member_band(records: Sequence[Dict], metric: str,
                batch_size: Optional[int]
                ) -> Tuple[List[float], List[float], List[float]]:
  """``(examples seen, mean, s.d.)`` of ``metric`` over a sweep's members,
  at the evaluations every member has (s.d. with ``n - 1``)."""
  members = members_of(records)
  by_x: Dict[float, Dict[int, float]] = {}
  for member in members:
    xs, ys = curve([r for r in records if r.get("member") == member],
                   metric, batch_size)
    for x, y in zip(xs, ys):
      by_x.setdefault(x, {})[member] = y
  xs, means, sds = [], [], []
  for x in sorted(by_x):
    values = list(by_x[x].values())
    if len(values) != len(members):
      continue
    mean = sum(values) / len(values)
    var = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)
           if len(values) > 1 else 0.0)
    xs.append(x)
    means.append(mean)
    sds.append(var ** 0.5)
  return xs, means, sds


def window_means(records: Sequence[Dict], metrics: Sequence[str],
                 window: int) -> List[Tuple[int, int, List[float]]]:
  """``(first step, lines, [mean of each metric])`` per window of
  ``window`` steps holding at least one record, in step order. A record
  missing a metric does not count towards that metric's mean (NaN when no
  record of the window has it)."""
  if window < 1:
    raise ValueError(f"the window must be >= 1 step, got {window}")
  groups: Dict[int, List[Dict]] = {}
  for record in records:
    groups.setdefault(int(record["step"]) // window, []).append(record)
  rows = []
  for index in sorted(groups):
    group = groups[index]
    means = []
    for metric in metrics:
      values = [float(r[metric]) for r in group
                if isinstance(r.get(metric), (int, float))]
      means.append(sum(values) / len(values) if values else float("nan"))
    rows.append((index * window, len(group), means))
  return rows


def print_table(records: Sequence[Dict], metrics: Sequence[str],
                window: int) -> None:
  """:func:`window_means` as Markdown; with ``fraction`` and ``other``
  among ``metrics`` a ``fraction - other`` column follows."""
  gap = "fraction" in metrics and "other" in metrics
  head = ["updates", "lines"] + list(metrics) + (
      ["fraction - other"] if gap else [])
  print("| " + " | ".join(head) + " |")
  print("|" + "---|" * len(head))
  for start, count, means in window_means(records, metrics, window):
    cells = [f"{start}-{start + window - 1}", str(count)]
    cells += [f"{m:.4f}" for m in means]
    if gap:
      by_name = dict(zip(metrics, means))
      cells.append(f"{by_name['fraction'] - by_name['other']:+.4f}")
    print("| " + " | ".join(cells) + " |")


def _table(parser, run: pathlib.Path, metrics: Optional[str],
           window: int, member: Optional[int]) -> int:
  try:
    records = read_records(run, "train")
    if not records:
      raise ValueError(f"{run}/metrics.jsonl holds no training line yet")
    members = members_of(records)
    if member is not None:
      if member not in members:
        raise ValueError(f"--member {member}: " + (
            f"{run} logs members {members}" if members
            else f"{run} is not a sweep"))
      records = [r for r in records if r.get("member") == member]
      members = []
    if metrics:
      names = metrics.split(",")
    elif all(any(k in r for r in records) for k in ("fraction", "other")):
      names = ["fraction", "other"]
    else:
      names = ["loss"]
    missing = [m for m in names if not any(m in r for r in records)]
    if missing:
      raise ValueError(f"no training line in {run} has {', '.join(missing)}")
    if not members:
      print_table(records, names, window)
    for index, each in enumerate(members):
      # A sweep's members train side by side: one table each, since a
      # window mixing their lines would hide which member moved.
      print(("\n" if index else "") + f"member {each}\n")
      print_table([r for r in records if r.get("member") == each], names,
                  window)
  except (FileNotFoundError, ValueError) as error:
    parser.exit(2, f"dnc-curve: error: {error}\n")
  return 0


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="dnc-curve", description=__doc__.split("\n\n")[0])
  parser.add_argument("--run", required=True, help="a run folder")
  parser.add_argument("--metrics", default=None,
                      help="comma-separated evaluation metrics (default: "
                      "bAbI's mean error and failed tasks, else every "
                      "valid/ metric)")
  parser.add_argument("--out", default=None,
                      help="PNG path (default RUN/learning-curve.png)")
  parser.add_argument("--batch-size", type=int, default=None,
                      help="examples per step, for runs whose settings do "
                      "not record it (runs older than settings.json)")
  parser.add_argument("--member", type=int, default=None,
                      help="a sweep's member M alone (default: every "
                      "member, their mean and ± 1 s.d.; with --table, "
                      "a table per member)")
  parser.add_argument("--table", type=int, default=None, metavar="N",
                      help="print the training lines' metrics (--metrics; "
                      "default Mini-SHRDLU's fraction and other, else loss) "
                      "averaged over windows of N updates, as Markdown, "
                      "instead of drawing")
  args = parser.parse_args(argv)
  run = pathlib.Path(args.run)
  if args.table is not None:
    return _table(parser, run, args.metrics, args.table, args.member)
  try:
    records = read_evaluations(run)
  except (FileNotFoundError, ValueError) as error:
    parser.exit(2, f"dnc-curve: error: {error}\n")
  members = members_of(records)
  if args.member is not None:
    if args.member not in members:
      parser.exit(2, f"dnc-curve: error: --member {args.member}: "
                  + (f"{run} logs members {members}\n" if members else
                     f"{run} is not a sweep\n"))
    records = [r for r in records if r.get("member") == args.member]
    members = []
  if not records:
    parser.exit(2, f"dnc-curve: error: {run}/metrics.jsonl holds no "
                "evaluation yet\n")
  if args.metrics:
    metrics = args.metrics.split(",")
  elif all(m in records[-1] for m in BABI_METRICS):
    metrics = list(BABI_METRICS)
  else:
    metrics = sorted(k for k in records[-1]
                     if k.startswith("valid/") and k != "valid/examples_seen"
                     and isinstance(records[-1][k], (int, float)))[:4]
  missing = [m for m in metrics if not any(m in r for r in records)]
  if missing:
    parser.exit(2, f"dnc-curve: error: no evaluation in {run} has "
                f"{', '.join(missing)}\n")
  out = pathlib.Path(args.out) if args.out else run / "learning-curve.png"
  if not out.parent.is_dir():
    parser.exit(2, f"dnc-curve: error: {out.parent} is not a folder\n")

  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  batch = args.batch_size or batch_size_of(run)
  marks = change_marks(read_records(run, "change"), batch)
  figure, axes = plt.subplots(len(metrics), 1, figsize=(6, 2.6 * len(metrics)),
                              squeeze=False)
  for axis, metric in zip(axes[:, 0], metrics):
    if members:
      for member in members:
        xs, ys = curve([r for r in records if r.get("member") == member],
                       metric, batch)
        axis.plot(xs, ys, color="grey", alpha=0.4, linewidth=0.8)
      xs, mean, sd = member_band(records, metric, batch)
      axis.plot(xs, mean, marker="o", label="mean")
      axis.fill_between(xs, [m - d for m, d in zip(mean, sd)],
                        [m + d for m, d in zip(mean, sd)], alpha=0.25,
                        label="± 1 s.d.")
      axis.legend(loc="best", fontsize="small")
    else:
      xs, ys = curve(records, metric, batch)
      axis.plot(xs, ys, marker="o")
    for x, label in marks:
      axis.axvline(x, color="black", linestyle="--", linewidth=0.8)
      axis.annotate(label, (x, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(3, -3), textcoords="offset points",
                    va="top", fontsize="x-small")
    axis.set_ylabel(metric)
    axis.grid(alpha=0.3)
  axes[-1, 0].set_xlabel("examples seen" if batch or any(
      "valid/examples_seen" in r for r in records) else "steps")
  title = run.name
  if members:
    title += f" ({len(members)} members, mean ± s.d.)"
  elif args.member is not None:
    title += f" (member {args.member})"
  axes[0, 0].set_title(title)
  figure.tight_layout()
  figure.savefig(out, dpi=100)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
