"""The C ABI's option structs as ctypes structures, shared by every test that drives libdetcore
through ctypes (one definition, in the header's field order)."""
import ctypes


class Opts(ctypes.Structure):
    """`det_init_options`."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("checkpoint_storage", ctypes.c_char_p),
        ("preempt_mode", ctypes.c_int32),
        ("tensorboard_mode", ctypes.c_int32),
        ("run_name", ctypes.c_char_p),
        ("run_dir", ctypes.c_char_p),
        ("hparams_json", ctypes.c_char_p),
        ("searcher_max_length", ctypes.c_int64),
        ("preempt_signals", ctypes.c_void_p),
        ("preempt_signals_len", ctypes.c_size_t),
        ("disable_signal_handlers", ctypes.c_bool),
        ("async_checkpoints", ctypes.c_bool),
        ("halt_file", ctypes.c_char_p),
        ("end_time", ctypes.c_double),
        ("halt_margin_seconds", ctypes.c_double),
        ("distributed", ctypes.c_void_p),
        ("cluster_info_dir", ctypes.c_char_p),
        ("report_queue_capacity", ctypes.c_size_t),
        ("close_timeout_seconds", ctypes.c_double),
        ("slurm_requeue", ctypes.c_bool),
        ("save_trial_latest", ctypes.c_int32),
        ("save_trial_best", ctypes.c_int32),
        ("searcher_metric", ctypes.c_char_p),
        ("smaller_is_better", ctypes.c_int32),
    ]
