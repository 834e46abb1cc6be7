"""A training script in the style of Determined's Core API tutorial (metrics, checkpoints,
resume, preemption), runnable with determined==0.38.1 off-cluster or with detcore. Only the
import differs; everything below it is the same code for both.

    python core_tutorial.py --impl determined|detcore --storage DIR [--latest ID] [--stop-after N]

Prints one JSON line: the last checkpoint's storage id and the final "model weight" x.
"""
import argparse
import json
import pathlib


def save_state(x, steps_completed, checkpoint_directory):
    with checkpoint_directory.joinpath("state").open("w") as f:
        f.write(f"{x},{steps_completed}")
    checkpoint_directory.joinpath("weights").mkdir()
    checkpoint_directory.joinpath("weights", "w.bin").write_bytes(bytes(range(x % 256)) * 3)


def load_state(checkpoint_directory):
    with pathlib.Path(checkpoint_directory).joinpath("state").open("r") as f:
        x, steps_completed = [int(field) for field in f.read().split(",")]
    assert pathlib.Path(checkpoint_directory).joinpath("weights", "w.bin").read_bytes() == bytes(range(x % 256)) * 3
    return x, steps_completed


def main(core_context, latest_checkpoint, increment_by, max_length, stop_after):
    x = 0
    starting_batch = 0
    last = latest_checkpoint
    if latest_checkpoint is not None:
        with core_context.checkpoint.restore_path(latest_checkpoint) as path:
            x, starting_batch = load_state(path)

    steps_completed = starting_batch
    for batch in range(starting_batch, max_length):
        x += increment_by
        steps_completed = batch + 1
        if steps_completed % 10 == 0:
            core_context.train.report_training_metrics(steps_completed=steps_completed, metrics={"x": x})
            core_context.train.report_progress(steps_completed / float(max_length))
            checkpoint_metadata = {"steps_completed": steps_completed, "x": x}
            with core_context.checkpoint.store_path(checkpoint_metadata) as (path, storage_id):
                save_state(x, steps_completed, path)
            last = storage_id
            if core_context.preempt.should_preempt() or steps_completed == stop_after:
                return last, x

    core_context.train.report_validation_metrics(steps_completed=steps_completed, metrics={"x": x})
    return last, x


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--impl", choices=["determined", "detcore"], required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--latest", default=None)
    p.add_argument("--increment-by", type=int, default=3)
    p.add_argument("--max-length", type=int, default=50)
    p.add_argument("--stop-after", type=int, default=-1)
    args = p.parse_args()

    if args.impl == "determined":
        from determined import core
    else:
        import detcore as core

    with core.init(checkpoint_storage=args.storage) as core_context:
        last, x = main(core_context, args.latest, args.increment_by, args.max_length, args.stop_after)
    print(json.dumps({"last": last, "x": x}))
