!> detcore — the Determined AI Core API for Fortran (module `detcore`).
!>
!> Two layers:
!>  1. `iso_c_binding` interfaces for the whole C API of detcore.h, with the C names
!>     (`det_core_init`, `det_ckpt_store_path_begin`, ...), the `det_init_options` and
!>     `det_distributed_config` structs as `bind(c)` types, and every `DET_*` constant.
!>     Required strings are passed as `character(kind=c_char)` arrays ending in c_null_char;
!>     strings that may be NULL, handles and out-strings are `type(c_ptr)`. Out-parameters are
!>     `intent(inout)`: detcore writes them only on success, so they keep their value on failure.
!>  2. Fortran wrappers: the derived type `det_context` (with a `final` procedure that closes it)
!>     and its type-bound procedures, `det_store`/`det_restore`/`det_searcher_op` scopes, Fortran
!>     character arguments (trailing blanks removed) and `character(:), allocatable` results,
!>     real(8) metrics, and an optional integer `stat` argument on every call: present, it
!>     receives the status (DET_OK = 0) and `detcore_last_error()` explains a failure; absent,
!>     a failure stops the program with `error stop` and detcore's message.
!>
!>   use detcore
!>   type(det_context) :: ctx
!>   type(det_store)   :: store
!>   call ctx%init(checkpoint_storage="/scratch/ckpts")
!>   call ctx%report_training_metrics(step, [character(len=8) :: "residual"], [res])
!>   call ctx%store_path(store, steps_completed=step)
!>   ! ... write files into store%path() ...
!>   call store%commit()
!>   if (ctx%should_preempt()) exit
!>   call ctx%close()
!>
!> Adding a C function: (1) add its `bind(c)` interface to the interface block (section 2, same
!> order as detcore.h), (2) add a wrapper: a type-bound procedure of the type it acts on that
!> converts strings with `cstr()`/`take_c_string()` and ends with `call check(st, stat)`.
!>
!> Finalization: a `det_context`, `det_store`, `det_restore` or `det_searcher_op` local to a
!> procedure is finalized when the procedure returns (gfortran 12 does), closing/aborting/freeing
!> it; variables of the main program are never finalized (Fortran rules), and copying a handle
!> (`a = b`) makes two owners. Always call `ctx%close()` and `store%commit()`/`%abort()`
!> explicitly: the finalizers are a safety net, and they never publish a half-written checkpoint.
module detcore
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: int32, int64, real64, error_unit
  implicit none
  private

  ! ---- 1. constants (detcore.h) ------------------------------------------------------------------
  integer(c_int32_t), parameter, public :: DET_OK = 0
  integer(c_int32_t), parameter, public :: DET_ERR_INVALID_ARGUMENT = 1
  integer(c_int32_t), parameter, public :: DET_ERR_STATE = 2
  integer(c_int32_t), parameter, public :: DET_ERR_NOT_FOUND = 3
  integer(c_int32_t), parameter, public :: DET_ERR_CONFLICT = 4
  integer(c_int32_t), parameter, public :: DET_ERR_UNSUPPORTED = 5
  integer(c_int32_t), parameter, public :: DET_ERR_BUFFER_TOO_SMALL = 6
  integer(c_int32_t), parameter, public :: DET_ERR_IO = 10
  integer(c_int32_t), parameter, public :: DET_ERR_STORAGE = 11
  integer(c_int32_t), parameter, public :: DET_ERR_MASTER = 12
  integer(c_int32_t), parameter, public :: DET_ERR_TIMEOUT = 13
  integer(c_int32_t), parameter, public :: DET_ERR_DISTRIBUTED = 14
  integer(c_int32_t), parameter, public :: DET_ERR_INTERNAL = 99

  integer(c_int32_t), parameter, public :: DET_LAUNCHER_AUTO = 0, DET_LAUNCHER_TORCH = 1, &
       DET_LAUNCHER_DEEPSPEED = 2, DET_LAUNCHER_HOROVOD = 3, DET_LAUNCHER_OPENMPI = 4, &
       DET_LAUNCHER_MPICH = 5, DET_LAUNCHER_SLURM = 6, DET_LAUNCHER_DETERMINED = 7
  integer(c_int32_t), parameter, public :: DET_UPLOAD_MODE_DEFAULT = 0, DET_UPLOAD_MODE_SYNC = 1, &
       DET_UPLOAD_MODE_ASYNC = 2
  integer(c_int32_t), parameter, public :: DET_ALERT_LEVEL_INFO = 0, DET_ALERT_LEVEL_WARN = 1, &
       DET_ALERT_LEVEL_DEBUG = 2, DET_ALERT_LEVEL_ERROR = 3
  integer(c_int32_t), parameter, public :: DET_PREEMPT_MODE_WORKERS_ASK_CHIEF = 0, &
       DET_PREEMPT_MODE_CHIEF_ONLY = 1, DET_PREEMPT_MODE_WORKERS_ASK_MASTER = 2
  integer(c_int32_t), parameter, public :: DET_TENSORBOARD_MODE_AUTO = 0, DET_TENSORBOARD_MODE_MANUAL = 1
  integer(c_int32_t), parameter, public :: DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD = 0, &
       DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD = 1
  integer(c_int32_t), parameter, public :: DET_SEARCHER_MODE_WORKERS_ASK_CHIEF = 0, &
       DET_SEARCHER_MODE_CHIEF_ONLY = 1
  integer(c_int32_t), parameter, public :: DET_UNIT_NONE = 0, DET_UNIT_EPOCHS = 1, &
       DET_UNIT_RECORDS = 2, DET_UNIT_BATCHES = 3
  integer(c_int32_t), parameter, public :: DET_EARLY_EXIT_INVALID_HP = 1
  integer(c_int32_t), parameter, public :: DET_LOG_LEVEL_DEBUG = 10, DET_LOG_LEVEL_INFO = 20, &
       DET_LOG_LEVEL_WARNING = 30, DET_LOG_LEVEL_ERROR = 40, DET_LOG_LEVEL_OFF = 255
  integer, parameter, public :: DET_STORAGE_ID_LEN = 37
  integer, parameter, public :: DET_TB_NAME_MAX = 4096

  ! ---- C structs -----------------------------------------------------------------------------------
  !> `det_distributed_config`: fill with `detcore_distributed_default()`.
  type, bind(c), public :: det_distributed_config
    integer(c_size_t) :: struct_size = 0
    integer(c_int32_t) :: rank = 0
    integer(c_int32_t) :: size = 1
    integer(c_int32_t) :: local_rank = 0
    integer(c_int32_t) :: local_size = 1
    integer(c_int32_t) :: cross_rank = 0
    integer(c_int32_t) :: cross_size = 1
    type(c_ptr) :: chief_ip = c_null_ptr
    integer(c_int32_t) :: port = 0
    real(c_double) :: connect_timeout_seconds = 0
    real(c_double) :: collective_timeout_seconds = 0
    type(c_ptr) :: job_id = c_null_ptr
  end type

  !> `det_init_options`: fill with `det_init_options_default(opts, c_sizeof(opts))`.
  type, bind(c), public :: det_init_options
    integer(c_size_t) :: struct_size = 0
    type(c_ptr) :: checkpoint_storage = c_null_ptr
    integer(c_int32_t) :: preempt_mode = 0
    integer(c_int32_t) :: tensorboard_mode = 0
    type(c_ptr) :: run_name = c_null_ptr
    type(c_ptr) :: run_dir = c_null_ptr
    type(c_ptr) :: hparams_json = c_null_ptr
    integer(c_int64_t) :: searcher_max_length = 0
    type(c_ptr) :: preempt_signals = c_null_ptr
    integer(c_size_t) :: preempt_signals_len = 0
    logical(c_bool) :: disable_signal_handlers = .false.
    logical(c_bool) :: async_checkpoints = .false.
    type(c_ptr) :: halt_file = c_null_ptr
    real(c_double) :: end_time = 0
    real(c_double) :: halt_margin_seconds = -1
    type(c_ptr) :: distributed = c_null_ptr
    type(c_ptr) :: cluster_info_dir = c_null_ptr
    integer(c_size_t) :: report_queue_capacity = 0
    real(c_double) :: close_timeout_seconds = 0
    logical(c_bool) :: slurm_requeue = .false.
    integer(c_int32_t) :: save_trial_latest = -1
    integer(c_int32_t) :: save_trial_best = -1
    type(c_ptr) :: searcher_metric = c_null_ptr
    integer(c_int32_t) :: smaller_is_better = -1
  end type

  ! ---- 2. the C API ------------------------------------------------------------------------------------
  public :: det_ckpt_store_path_begin, det_ckpt_store_path_begin_steps, det_ckpt_store_path, &
       det_ckpt_store_storage_id, &
       det_ckpt_store_path_end, det_ckpt_store_path_end_mode, det_ckpt_store_path_abort, &
       det_ckpt_upload, det_ckpt_download, &
       det_ckpt_restore_path_begin, det_ckpt_restore_path, det_ckpt_restore_storage_id, &
       det_ckpt_restore_path_end, &
       det_ckpt_get_metadata, det_ckpt_delete, det_ckpt_wait, det_core_init, det_core_close, &
       det_version, det_version_number, det_string_free, det_log_set_level, &
       det_distributed_from_env, det_dist_gather, det_dist_allgather, det_dist_broadcast, &
       det_dist_gather_local, det_dist_allgather_local, det_dist_broadcast_local, det_dist_barrier, &
       det_bytes_list_len, det_bytes_list_get, det_bytes_list_free, det_info_is_on_cluster, &
       det_info_latest_checkpoint, det_info_steps_completed, det_info_hparams_json, &
       det_info_get_hparam_f64, det_info_get_hparam_i64, det_info_get_hparam_str, &
       det_info_get_hparam_f64_or, det_info_get_hparam_i64_or, det_info_get_hparam_str_or, det_info_run_name, &
       det_info_run_dir, det_dist_rank, det_dist_size, det_dist_local_rank, det_dist_local_size, &
       det_dist_cross_rank, det_dist_cross_size, det_info_trial_id, det_info_experiment_id, &
       det_info_trial_seed, det_info_trial_run_id, det_info_experiment_config_json, &
       det_info_user_data_json, det_info_task_type, det_info_task_id, det_info_allocation_id, &
       det_info_cluster_id, det_info_agent_id, det_info_master_url, det_info_container_count, &
       det_info_container_addr, det_info_container_slot_count, det_info_container_rank, &
       det_info_slot_id_count, det_info_slot_id, det_info_gpu_uuid_count, det_info_gpu_uuid, &
       det_core_alert, det_info_trial_debug, det_info_inter_node_network_interface, &
       det_cluster_info_json, det_experimental_report_task_using_checkpoint, &
       det_experimental_report_task_using_model_version, det_init_options_default, &
       det_distributed_config_default, det_should_preempt, det_should_preempt_ex, &
       det_preempt_acknowledge, det_preempt_seconds_remaining, det_profiler_on, det_profiler_off, &
       det_searcher_next_op, &
       det_searcher_op_length, det_searcher_op_report_progress, det_searcher_op_report_completed, &
       det_searcher_op_report_completed_json, det_searcher_op_free, det_searcher_get_configured_units, &
       det_searcher_acknowledge_out_of_ops, det_status_name, det_last_error_message, &
       det_last_error_copy, det_tb_writer_open, det_tb_writer_add_scalar, det_tb_writer_add_histogram, &
       det_tb_writer_flush, det_tb_writer_close, det_train_get_tensorboard_path, &
       det_train_upload_tensorboard_files, det_train_flush_tensorboard, &
       det_train_report_training_metrics, det_train_report_validation_metrics, &
       det_train_report_metrics, det_train_report_scalars, det_train_set_status, &
       det_train_report_progress, det_train_report_early_exit, &
       det_train_get_experiment_best_validation, det_train_set_run_metadata, &
       det_train_get_run_metadata, det_train_flush

  abstract interface
    !> The shape of the `det_info_*` functions that answer a string.
    function det_info_str_getter(ctx, out) bind(c)
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_str_getter
    end function
  end interface

  interface
    ! -- checkpoints (det_ckpt_*)
    function det_ckpt_store_path_begin(ctx, metadata_json, shard, out) bind(c, name="det_ckpt_store_path_begin")
      import :: c_ptr, c_char, c_bool, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: metadata_json
      logical(c_bool), value :: shard
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_ckpt_store_path_begin
    end function
    function det_ckpt_store_path_begin_steps(ctx, steps_completed, extra_metadata_json, shard, out) &
         bind(c, name="det_ckpt_store_path_begin_steps")
      import :: c_ptr, c_int64_t, c_bool, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int64_t), value :: steps_completed
      type(c_ptr), value :: extra_metadata_json
      logical(c_bool), value :: shard
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_ckpt_store_path_begin_steps
    end function
    function det_ckpt_store_path(store, out) bind(c, name="det_ckpt_store_path")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: store
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_ckpt_store_path
    end function
    function det_ckpt_store_storage_id(store, out) bind(c, name="det_ckpt_store_storage_id")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: store
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_ckpt_store_storage_id
    end function
    function det_ckpt_store_path_end(store, storage_id_out) bind(c, name="det_ckpt_store_path_end")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: store
      type(c_ptr), value :: storage_id_out
      integer(c_int32_t) :: det_ckpt_store_path_end
    end function
    function det_ckpt_store_path_end_mode(store, upload_mode, storage_id_out) &
         bind(c, name="det_ckpt_store_path_end_mode")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: store
      integer(c_int32_t), value :: upload_mode
      type(c_ptr), value :: storage_id_out
      integer(c_int32_t) :: det_ckpt_store_path_end_mode
    end function
    function det_ckpt_store_path_abort(store) bind(c, name="det_ckpt_store_path_abort")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: store
      integer(c_int32_t) :: det_ckpt_store_path_abort
    end function
    function det_ckpt_upload(ctx, dir, metadata_json, shard, selector, userdata, storage_id_out) &
         bind(c, name="det_ckpt_upload")
      import :: c_ptr, c_char, c_bool, c_funptr, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: dir, metadata_json
      logical(c_bool), value :: shard
      type(c_funptr), value :: selector
      type(c_ptr), value :: userdata
      character(kind=c_char), dimension(*), intent(inout) :: storage_id_out
      integer(c_int32_t) :: det_ckpt_upload
    end function
    function det_ckpt_download(ctx, storage_id, dir, download_mode, selector, userdata) &
         bind(c, name="det_ckpt_download")
      import :: c_ptr, c_char, c_funptr, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: storage_id, dir
      integer(c_int32_t), value :: download_mode
      type(c_funptr), value :: selector
      type(c_ptr), value :: userdata
      integer(c_int32_t) :: det_ckpt_download
    end function
    function det_ckpt_restore_path_begin(ctx, storage_id, download_mode, selector, userdata, out) &
         bind(c, name="det_ckpt_restore_path_begin")
      import :: c_ptr, c_char, c_funptr, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: storage_id
      integer(c_int32_t), value :: download_mode
      type(c_funptr), value :: selector
      type(c_ptr), value :: userdata
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_ckpt_restore_path_begin
    end function
    function det_ckpt_restore_path(restore, out) bind(c, name="det_ckpt_restore_path")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: restore
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_ckpt_restore_path
    end function
    function det_ckpt_restore_storage_id(restore, out) bind(c, name="det_ckpt_restore_storage_id")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: restore
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_ckpt_restore_storage_id
    end function
    function det_ckpt_restore_path_end(restore) bind(c, name="det_ckpt_restore_path_end")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: restore
      integer(c_int32_t) :: det_ckpt_restore_path_end
    end function
    function det_ckpt_get_metadata(ctx, storage_id, out) bind(c, name="det_ckpt_get_metadata")
      import :: c_ptr, c_char, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: storage_id
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_ckpt_get_metadata
    end function
    function det_ckpt_delete(ctx, storage_id) bind(c, name="det_ckpt_delete")
      import :: c_ptr, c_char, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: storage_id
      integer(c_int32_t) :: det_ckpt_delete
    end function
    function det_ckpt_wait(ctx) bind(c, name="det_ckpt_wait")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t) :: det_ckpt_wait
    end function

    ! -- context, versions, strings, logging (det_core_*, det_version*, det_string_free, det_log_*)
    function det_core_init(opts, out) bind(c, name="det_core_init")
      import :: det_init_options, c_ptr, c_int32_t
      type(det_init_options), intent(in) :: opts
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_core_init
    end function
    function det_core_close(ctx) bind(c, name="det_core_close")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t) :: det_core_close
    end function
    function det_version() bind(c, name="det_version")
      import :: c_ptr
      type(c_ptr) :: det_version
    end function
    function det_version_number() bind(c, name="det_version_number")
      import :: c_int32_t
      integer(c_int32_t) :: det_version_number
    end function
    subroutine det_string_free(s) bind(c, name="det_string_free")
      import :: c_ptr
      type(c_ptr), value :: s
    end subroutine
    function det_log_set_level(level) bind(c, name="det_log_set_level")
      import :: c_int32_t
      integer(c_int32_t), value :: level
      integer(c_int32_t) :: det_log_set_level
    end function

    ! -- distributed (det_distributed_*, det_dist_*, det_bytes_list_*)
    function det_distributed_from_env(launcher_kind, cfg) bind(c, name="det_distributed_from_env")
      import :: det_distributed_config, c_int32_t
      integer(c_int32_t), value :: launcher_kind
      type(det_distributed_config), intent(inout) :: cfg
      integer(c_int32_t) :: det_distributed_from_env
    end function
    function det_dist_gather(ctx, data, len, out) bind(c, name="det_dist_gather")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: ctx, data
      integer(c_size_t), value :: len
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_dist_gather
    end function
    function det_dist_allgather(ctx, data, len, out) bind(c, name="det_dist_allgather")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: ctx, data
      integer(c_size_t), value :: len
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_dist_allgather
    end function
    function det_dist_broadcast(ctx, data, len, out) bind(c, name="det_dist_broadcast")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: ctx, data
      integer(c_size_t), value :: len
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_dist_broadcast
    end function
    function det_dist_gather_local(ctx, data, len, out) bind(c, name="det_dist_gather_local")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: ctx, data
      integer(c_size_t), value :: len
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_dist_gather_local
    end function
    function det_dist_allgather_local(ctx, data, len, out) bind(c, name="det_dist_allgather_local")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: ctx, data
      integer(c_size_t), value :: len
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_dist_allgather_local
    end function
    function det_dist_broadcast_local(ctx, data, len, out) bind(c, name="det_dist_broadcast_local")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: ctx, data
      integer(c_size_t), value :: len
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_dist_broadcast_local
    end function
    function det_dist_barrier(ctx) bind(c, name="det_dist_barrier")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t) :: det_dist_barrier
    end function
    function det_bytes_list_len(list, out) bind(c, name="det_bytes_list_len")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: list
      integer(c_size_t), intent(inout) :: out
      integer(c_int32_t) :: det_bytes_list_len
    end function
    function det_bytes_list_get(list, index, data, len) bind(c, name="det_bytes_list_get")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: list
      integer(c_size_t), value :: index
      type(c_ptr), intent(inout) :: data
      integer(c_size_t), intent(inout) :: len
      integer(c_int32_t) :: det_bytes_list_get
    end function
    function det_bytes_list_free(list) bind(c, name="det_bytes_list_free")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: list
      integer(c_int32_t) :: det_bytes_list_free
    end function

    ! -- info (det_info_*, det_dist_rank ...)
    function det_info_is_on_cluster(ctx, out) bind(c, name="det_info_is_on_cluster")
      import :: c_ptr, c_bool, c_int32_t
      type(c_ptr), value :: ctx
      logical(c_bool), intent(inout) :: out
      integer(c_int32_t) :: det_info_is_on_cluster
    end function
    function det_info_latest_checkpoint(ctx, out) bind(c, name="det_info_latest_checkpoint")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_latest_checkpoint
    end function
    function det_info_steps_completed(ctx, out) bind(c, name="det_info_steps_completed")
      import :: c_ptr, c_int64_t, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int64_t), intent(inout) :: out
      integer(c_int32_t) :: det_info_steps_completed
    end function
    function det_info_hparams_json(ctx, out) bind(c, name="det_info_hparams_json")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_hparams_json
    end function
    function det_info_get_hparam_f64(ctx, name, out) bind(c, name="det_info_get_hparam_f64")
      import :: c_ptr, c_char, c_double, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: name
      real(c_double), intent(inout) :: out
      integer(c_int32_t) :: det_info_get_hparam_f64
    end function
    function det_info_get_hparam_i64(ctx, name, out) bind(c, name="det_info_get_hparam_i64")
      import :: c_ptr, c_char, c_int64_t, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: name
      integer(c_int64_t), intent(inout) :: out
      integer(c_int32_t) :: det_info_get_hparam_i64
    end function
    function det_info_get_hparam_str(ctx, name, out) bind(c, name="det_info_get_hparam_str")
      import :: c_ptr, c_char, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: name
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_get_hparam_str
    end function
    function det_info_get_hparam_f64_or(ctx, name, default_value, out) bind(c, name="det_info_get_hparam_f64_or")
      import :: c_ptr, c_char, c_double, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: name
      real(c_double), value :: default_value
      real(c_double), intent(inout) :: out
      integer(c_int32_t) :: det_info_get_hparam_f64_or
    end function
    function det_info_get_hparam_i64_or(ctx, name, default_value, out) bind(c, name="det_info_get_hparam_i64_or")
      import :: c_ptr, c_char, c_int64_t, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: name
      integer(c_int64_t), value :: default_value
      integer(c_int64_t), intent(inout) :: out
      integer(c_int32_t) :: det_info_get_hparam_i64_or
    end function
    function det_info_get_hparam_str_or(ctx, name, default_value, out) bind(c, name="det_info_get_hparam_str_or")
      import :: c_ptr, c_char, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: name
      type(c_ptr), value :: default_value
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_get_hparam_str_or
    end function
    function det_info_run_name(ctx, out) bind(c, name="det_info_run_name")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_run_name
    end function
    function det_info_run_dir(ctx, out) bind(c, name="det_info_run_dir")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_run_dir
    end function
    function det_dist_rank(ctx, out) bind(c, name="det_dist_rank")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t), intent(inout) :: out
      integer(c_int32_t) :: det_dist_rank
    end function
    function det_dist_size(ctx, out) bind(c, name="det_dist_size")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t), intent(inout) :: out
      integer(c_int32_t) :: det_dist_size
    end function
    function det_dist_local_rank(ctx, out) bind(c, name="det_dist_local_rank")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t), intent(inout) :: out
      integer(c_int32_t) :: det_dist_local_rank
    end function
    function det_dist_local_size(ctx, out) bind(c, name="det_dist_local_size")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t), intent(inout) :: out
      integer(c_int32_t) :: det_dist_local_size
    end function
    function det_dist_cross_rank(ctx, out) bind(c, name="det_dist_cross_rank")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t), intent(inout) :: out
      integer(c_int32_t) :: det_dist_cross_rank
    end function
    function det_dist_cross_size(ctx, out) bind(c, name="det_dist_cross_size")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t), intent(inout) :: out
      integer(c_int32_t) :: det_dist_cross_size
    end function

    ! -- on-cluster info and alerts (det_info_* of ClusterInfo, det_core_alert)
    function det_info_trial_id(ctx, out) bind(c, name="det_info_trial_id")
      import :: c_ptr, c_int64_t, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int64_t), intent(inout) :: out
      integer(c_int32_t) :: det_info_trial_id
    end function
    function det_info_experiment_id(ctx, out) bind(c, name="det_info_experiment_id")
      import :: c_ptr, c_int64_t, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int64_t), intent(inout) :: out
      integer(c_int32_t) :: det_info_experiment_id
    end function
    !> `out` is a C uint32_t: values above huge(0_c_int32_t) read as negative (add 2**32).
    function det_info_trial_seed(ctx, out) bind(c, name="det_info_trial_seed")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t), intent(inout) :: out
      integer(c_int32_t) :: det_info_trial_seed
    end function
    function det_info_trial_run_id(ctx, out) bind(c, name="det_info_trial_run_id")
      import :: c_ptr, c_int64_t, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int64_t), intent(inout) :: out
      integer(c_int32_t) :: det_info_trial_run_id
    end function
    function det_info_experiment_config_json(ctx, out) bind(c, name="det_info_experiment_config_json")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_experiment_config_json
    end function
    function det_info_user_data_json(ctx, out) bind(c, name="det_info_user_data_json")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_user_data_json
    end function
    function det_info_task_type(ctx, out) bind(c, name="det_info_task_type")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_task_type
    end function
    function det_info_task_id(ctx, out) bind(c, name="det_info_task_id")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_task_id
    end function
    function det_info_allocation_id(ctx, out) bind(c, name="det_info_allocation_id")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_allocation_id
    end function
    function det_info_cluster_id(ctx, out) bind(c, name="det_info_cluster_id")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_cluster_id
    end function
    function det_info_agent_id(ctx, out) bind(c, name="det_info_agent_id")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_agent_id
    end function
    function det_info_master_url(ctx, out) bind(c, name="det_info_master_url")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_master_url
    end function
    function det_info_container_count(ctx, out) bind(c, name="det_info_container_count")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_size_t), intent(inout) :: out
      integer(c_int32_t) :: det_info_container_count
    end function
    function det_info_container_addr(ctx, index, out) bind(c, name="det_info_container_addr")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_size_t), value :: index
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_container_addr
    end function
    function det_info_container_slot_count(ctx, index, out) bind(c, name="det_info_container_slot_count")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_size_t), value :: index
      integer(c_int32_t), intent(inout) :: out
      integer(c_int32_t) :: det_info_container_slot_count
    end function
    function det_info_container_rank(ctx, out) bind(c, name="det_info_container_rank")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t), intent(inout) :: out
      integer(c_int32_t) :: det_info_container_rank
    end function
    function det_info_slot_id_count(ctx, out) bind(c, name="det_info_slot_id_count")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_size_t), intent(inout) :: out
      integer(c_int32_t) :: det_info_slot_id_count
    end function
    function det_info_slot_id(ctx, index, out) bind(c, name="det_info_slot_id")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_size_t), value :: index
      integer(c_int32_t), intent(inout) :: out
      integer(c_int32_t) :: det_info_slot_id
    end function
    function det_info_gpu_uuid_count(ctx, out) bind(c, name="det_info_gpu_uuid_count")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_size_t), intent(inout) :: out
      integer(c_int32_t) :: det_info_gpu_uuid_count
    end function
    function det_info_gpu_uuid(ctx, index, out) bind(c, name="det_info_gpu_uuid")
      import :: c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_size_t), value :: index
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_gpu_uuid
    end function
    !> `title`/`description`: c_null_ptr or c_loc of a NUL-terminated character array.
    function det_core_alert(ctx, title, description, level) bind(c, name="det_core_alert")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx, title, description
      integer(c_int32_t), value :: level
      integer(c_int32_t) :: det_core_alert
    end function

    function det_info_trial_debug(ctx, out) bind(c, name="det_info_trial_debug")
      import :: c_ptr, c_bool, c_int32_t
      type(c_ptr), value :: ctx
      logical(c_bool), intent(inout) :: out
      integer(c_int32_t) :: det_info_trial_debug
    end function
    !> `out` is c_null_ptr when no interface is set.
    function det_info_inter_node_network_interface(ctx, out) bind(c, name="det_info_inter_node_network_interface")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_info_inter_node_network_interface
    end function
    !> `info_dir`: c_null_ptr or c_loc of a NUL-terminated character array; `out` is c_null_ptr
    !> off-cluster.
    function det_cluster_info_json(info_dir, out) bind(c, name="det_cluster_info_json")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: info_dir
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_cluster_info_json
    end function
    function det_experimental_report_task_using_checkpoint(ctx, checkpoint_uuid) &
         bind(c, name="det_experimental_report_task_using_checkpoint")
      import :: c_ptr, c_char, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: checkpoint_uuid
      integer(c_int32_t) :: det_experimental_report_task_using_checkpoint
    end function
    function det_experimental_report_task_using_model_version(ctx, checkpoint_uuid, model_id, model_version) &
         bind(c, name="det_experimental_report_task_using_model_version")
      import :: c_ptr, c_char, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: checkpoint_uuid
      integer(c_int32_t), value :: model_id, model_version
      integer(c_int32_t) :: det_experimental_report_task_using_model_version
    end function

    ! -- options
    function det_init_options_default(opts, struct_size) bind(c, name="det_init_options_default")
      import :: det_init_options, c_size_t, c_int32_t
      type(det_init_options), intent(inout) :: opts
      integer(c_size_t), value :: struct_size
      integer(c_int32_t) :: det_init_options_default
    end function
    function det_distributed_config_default(cfg, struct_size) bind(c, name="det_distributed_config_default")
      import :: det_distributed_config, c_size_t, c_int32_t
      type(det_distributed_config), intent(inout) :: cfg
      integer(c_size_t), value :: struct_size
      integer(c_int32_t) :: det_distributed_config_default
    end function

    ! -- preemption (det_should_preempt*, det_preempt_*)
    function det_should_preempt(ctx, out) bind(c, name="det_should_preempt")
      import :: c_ptr, c_bool, c_int32_t
      type(c_ptr), value :: ctx
      logical(c_bool), intent(inout) :: out
      integer(c_int32_t) :: det_should_preempt
    end function
    function det_should_preempt_ex(ctx, auto_ack, out) bind(c, name="det_should_preempt_ex")
      import :: c_ptr, c_bool, c_int32_t
      type(c_ptr), value :: ctx
      logical(c_bool), value :: auto_ack
      logical(c_bool), intent(inout) :: out
      integer(c_int32_t) :: det_should_preempt_ex
    end function
    function det_preempt_acknowledge(ctx) bind(c, name="det_preempt_acknowledge")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t) :: det_preempt_acknowledge
    end function
    function det_preempt_seconds_remaining(ctx, known, seconds) bind(c, name="det_preempt_seconds_remaining")
      import :: c_ptr, c_bool, c_double, c_int32_t
      type(c_ptr), value :: ctx
      logical(c_bool), intent(inout) :: known
      real(c_double), intent(inout) :: seconds
      integer(c_int32_t) :: det_preempt_seconds_remaining
    end function

    ! -- profiler (det_profiler_*)
    function det_profiler_on(ctx, sampling_interval, samples_per_report) bind(c, name="det_profiler_on")
      import :: c_ptr, c_double, c_int32_t
      type(c_ptr), value :: ctx
      real(c_double), value :: sampling_interval
      integer(c_int32_t), value :: samples_per_report
      integer(c_int32_t) :: det_profiler_on
    end function
    function det_profiler_off(ctx) bind(c, name="det_profiler_off")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t) :: det_profiler_off
    end function

    ! -- searcher (det_searcher_*)
    function det_searcher_next_op(ctx, searcher_mode, out) bind(c, name="det_searcher_next_op")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t), value :: searcher_mode
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_searcher_next_op
    end function
    function det_searcher_op_length(op, out) bind(c, name="det_searcher_op_length")
      import :: c_ptr, c_int64_t, c_int32_t
      type(c_ptr), value :: op
      integer(c_int64_t), intent(inout) :: out
      integer(c_int32_t) :: det_searcher_op_length
    end function
    function det_searcher_op_report_progress(op, length) bind(c, name="det_searcher_op_report_progress")
      import :: c_ptr, c_double, c_int32_t
      type(c_ptr), value :: op
      real(c_double), value :: length
      integer(c_int32_t) :: det_searcher_op_report_progress
    end function
    function det_searcher_op_report_completed(op, searcher_metric) bind(c, name="det_searcher_op_report_completed")
      import :: c_ptr, c_double, c_int32_t
      type(c_ptr), value :: op
      real(c_double), value :: searcher_metric
      integer(c_int32_t) :: det_searcher_op_report_completed
    end function
    function det_searcher_op_report_completed_json(op, searcher_metric_json) &
         bind(c, name="det_searcher_op_report_completed_json")
      import :: c_ptr, c_char, c_int32_t
      type(c_ptr), value :: op
      character(kind=c_char), dimension(*), intent(in) :: searcher_metric_json
      integer(c_int32_t) :: det_searcher_op_report_completed_json
    end function
    function det_searcher_op_free(op) bind(c, name="det_searcher_op_free")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: op
      integer(c_int32_t) :: det_searcher_op_free
    end function
    function det_searcher_get_configured_units(ctx, out) bind(c, name="det_searcher_get_configured_units")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t), intent(inout) :: out
      integer(c_int32_t) :: det_searcher_get_configured_units
    end function
    function det_searcher_acknowledge_out_of_ops(ctx) bind(c, name="det_searcher_acknowledge_out_of_ops")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t) :: det_searcher_acknowledge_out_of_ops
    end function

    ! -- status and errors
    function det_status_name(status) bind(c, name="det_status_name")
      import :: c_ptr, c_int32_t
      integer(c_int32_t), value :: status
      type(c_ptr) :: det_status_name
    end function
    function det_last_error_message() bind(c, name="det_last_error_message")
      import :: c_ptr
      type(c_ptr) :: det_last_error_message
    end function
    function det_last_error_copy(buf, cap, len) bind(c, name="det_last_error_copy")
      import :: c_char, c_size_t, c_int32_t
      character(kind=c_char), dimension(*), intent(inout) :: buf
      integer(c_size_t), value :: cap
      integer(c_size_t), intent(inout) :: len
      integer(c_int32_t) :: det_last_error_copy
    end function

    ! -- TensorBoard event-file writer (det_tb_writer_*)
    function det_tb_writer_open(dir, out) bind(c, name="det_tb_writer_open")
      import :: c_ptr, c_char, c_int32_t
      character(kind=c_char), dimension(*), intent(in) :: dir
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_tb_writer_open
    end function
    function det_tb_writer_add_scalar(w, tag, step, value) bind(c, name="det_tb_writer_add_scalar")
      import :: c_ptr, c_char, c_int64_t, c_double, c_int32_t
      type(c_ptr), value :: w
      character(kind=c_char), dimension(*), intent(in) :: tag
      integer(c_int64_t), value :: step
      real(c_double), value :: value
      integer(c_int32_t) :: det_tb_writer_add_scalar
    end function
    function det_tb_writer_add_histogram(w, tag, step, values, n) bind(c, name="det_tb_writer_add_histogram")
      import :: c_ptr, c_char, c_int64_t, c_double, c_size_t, c_int32_t
      type(c_ptr), value :: w
      character(kind=c_char), dimension(*), intent(in) :: tag
      integer(c_int64_t), value :: step
      real(c_double), dimension(*), intent(in) :: values
      integer(c_size_t), value :: n
      integer(c_int32_t) :: det_tb_writer_add_histogram
    end function
    function det_tb_writer_flush(w) bind(c, name="det_tb_writer_flush")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: w
      integer(c_int32_t) :: det_tb_writer_flush
    end function
    function det_tb_writer_close(w) bind(c, name="det_tb_writer_close")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: w
      integer(c_int32_t) :: det_tb_writer_close
    end function

    ! -- TensorBoard folder and uploads (det_train_*tensorboard*)
    function det_train_get_tensorboard_path(ctx, out) bind(c, name="det_train_get_tensorboard_path")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_train_get_tensorboard_path
    end function
    function det_train_upload_tensorboard_files(ctx, selector, selector_userdata, mangler, mangler_userdata) &
         bind(c, name="det_train_upload_tensorboard_files")
      import :: c_ptr, c_funptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_funptr), value :: selector
      type(c_ptr), value :: selector_userdata
      type(c_funptr), value :: mangler
      type(c_ptr), value :: mangler_userdata
      integer(c_int32_t) :: det_train_upload_tensorboard_files
    end function
    function det_train_flush_tensorboard(ctx, timeout_seconds) bind(c, name="det_train_flush_tensorboard")
      import :: c_ptr, c_double, c_int32_t
      type(c_ptr), value :: ctx
      real(c_double), value :: timeout_seconds
      integer(c_int32_t) :: det_train_flush_tensorboard
    end function

    ! -- training (det_train_*)
    function det_train_report_training_metrics(ctx, steps_completed, metrics_json, batch_metrics_json) &
         bind(c, name="det_train_report_training_metrics")
      import :: c_ptr, c_char, c_int64_t, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int64_t), value :: steps_completed
      character(kind=c_char), dimension(*), intent(in) :: metrics_json
      type(c_ptr), value :: batch_metrics_json
      integer(c_int32_t) :: det_train_report_training_metrics
    end function
    function det_train_report_validation_metrics(ctx, steps_completed, metrics_json) &
         bind(c, name="det_train_report_validation_metrics")
      import :: c_ptr, c_char, c_int64_t, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int64_t), value :: steps_completed
      character(kind=c_char), dimension(*), intent(in) :: metrics_json
      integer(c_int32_t) :: det_train_report_validation_metrics
    end function
    function det_train_report_metrics(ctx, group, steps_completed, metrics_json) &
         bind(c, name="det_train_report_metrics")
      import :: c_ptr, c_char, c_int64_t, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: group
      integer(c_int64_t), value :: steps_completed
      character(kind=c_char), dimension(*), intent(in) :: metrics_json
      integer(c_int32_t) :: det_train_report_metrics
    end function
    function det_train_report_scalars(ctx, group, steps_completed, names, values, n) &
         bind(c, name="det_train_report_scalars")
      import :: c_ptr, c_char, c_int64_t, c_double, c_size_t, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: group
      integer(c_int64_t), value :: steps_completed
      type(c_ptr), dimension(*), intent(in) :: names
      real(c_double), dimension(*), intent(in) :: values
      integer(c_size_t), value :: n
      integer(c_int32_t) :: det_train_report_scalars
    end function
    function det_train_set_status(ctx, status) bind(c, name="det_train_set_status")
      import :: c_ptr, c_char, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: status
      integer(c_int32_t) :: det_train_set_status
    end function
    function det_train_report_progress(ctx, progress) bind(c, name="det_train_report_progress")
      import :: c_ptr, c_double, c_int32_t
      type(c_ptr), value :: ctx
      real(c_double), value :: progress
      integer(c_int32_t) :: det_train_report_progress
    end function
    function det_train_report_early_exit(ctx, reason) bind(c, name="det_train_report_early_exit")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      integer(c_int32_t), value :: reason
      integer(c_int32_t) :: det_train_report_early_exit
    end function
    function det_train_get_experiment_best_validation(ctx, found, out) &
         bind(c, name="det_train_get_experiment_best_validation")
      import :: c_ptr, c_bool, c_double, c_int32_t
      type(c_ptr), value :: ctx
      logical(c_bool), intent(inout) :: found
      real(c_double), intent(inout) :: out
      integer(c_int32_t) :: det_train_get_experiment_best_validation
    end function
    function det_train_set_run_metadata(ctx, metadata_json, out) bind(c, name="det_train_set_run_metadata")
      import :: c_ptr, c_char, c_int32_t
      type(c_ptr), value :: ctx
      character(kind=c_char), dimension(*), intent(in) :: metadata_json
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_train_set_run_metadata
    end function
    function det_train_get_run_metadata(ctx, out) bind(c, name="det_train_get_run_metadata")
      import :: c_ptr, c_int32_t
      type(c_ptr), value :: ctx
      type(c_ptr), intent(inout) :: out
      integer(c_int32_t) :: det_train_get_run_metadata
    end function
    function det_train_flush(ctx, timeout_seconds) bind(c, name="det_train_flush")
      import :: c_ptr, c_double, c_int32_t
      type(c_ptr), value :: ctx
      real(c_double), value :: timeout_seconds
      integer(c_int32_t) :: det_train_flush
    end function

    ! -- libc, for reading C strings
    function c_strlen(s) bind(c, name="strlen")
      import :: c_ptr, c_size_t
      type(c_ptr), value :: s
      integer(c_size_t) :: c_strlen
    end function
  end interface

  ! ---- 3. Fortran wrappers ------------------------------------------------------------------------------
  !> A Core API context. Open with `call ctx%init(...)`, close with `call ctx%close()`.
  type, public :: det_context
    type(c_ptr) :: ptr = c_null_ptr
  contains
    procedure :: init => ctx_init
    procedure :: close => ctx_close
    procedure :: is_open => ctx_is_open
    ! info
    procedure :: on_cluster => ctx_on_cluster
    procedure :: latest_checkpoint => ctx_latest_checkpoint
    procedure :: steps_completed => ctx_steps_completed
    procedure :: hparams_json => ctx_hparams_json
    procedure :: hparam_real => ctx_hparam_real
    procedure :: hparam_int => ctx_hparam_int
    procedure :: hparam_str => ctx_hparam_str
    procedure :: run_name => ctx_run_name
    procedure :: run_dir => ctx_run_dir
    ! on-cluster info (Python's ClusterInfo / ClusterInfo.trial) and alerts
    procedure :: trial_id => ctx_trial_id
    procedure :: experiment_id => ctx_experiment_id
    procedure :: trial_seed => ctx_trial_seed
    procedure :: trial_run_id => ctx_trial_run_id
    procedure :: experiment_config_json => ctx_experiment_config_json
    procedure :: user_data_json => ctx_user_data_json
    procedure :: task_type => ctx_task_type
    procedure :: task_id => ctx_task_id
    procedure :: allocation_id => ctx_allocation_id
    procedure :: cluster_id => ctx_cluster_id
    procedure :: agent_id => ctx_agent_id
    procedure :: master_url => ctx_master_url
    procedure :: container_rank => ctx_container_rank
    procedure :: container_count => ctx_container_count
    procedure :: container_addr => ctx_container_addr
    procedure :: container_slot_count => ctx_container_slot_count
    procedure :: slot_id_count => ctx_slot_id_count
    procedure :: slot_id => ctx_slot_id
    procedure :: gpu_uuid_count => ctx_gpu_uuid_count
    procedure :: gpu_uuid => ctx_gpu_uuid
    procedure :: trial_debug => ctx_trial_debug
    procedure :: inter_node_network_interface => ctx_inter_node_network_interface
    procedure :: alert => ctx_alert
    procedure :: report_task_using_checkpoint => ctx_report_task_using_checkpoint
    procedure :: report_task_using_model_version => ctx_report_task_using_model_version
    ! profiler
    procedure :: profiler_on => ctx_profiler_on
    procedure :: profiler_off => ctx_profiler_off
    ! checkpoints
    procedure :: store_path => ctx_store_path
    procedure :: restore_path => ctx_restore_path
    procedure :: upload => ctx_upload
    procedure :: download => ctx_download
    procedure :: get_metadata => ctx_get_metadata
    procedure :: delete_checkpoint => ctx_delete_checkpoint
    procedure :: wait_checkpoints => ctx_wait_checkpoints
    ! preemption
    procedure :: should_preempt => ctx_should_preempt
    procedure :: acknowledge_preemption => ctx_acknowledge_preemption
    procedure :: seconds_remaining => ctx_seconds_remaining
    ! training
    procedure :: report_training_metrics => ctx_report_training_metrics
    procedure :: report_validation_metrics => ctx_report_validation_metrics
    procedure :: report_metrics => ctx_report_metrics
    procedure :: report_training_metrics_json => ctx_report_training_metrics_json
    procedure :: report_validation_metrics_json => ctx_report_validation_metrics_json
    procedure :: report_metrics_json => ctx_report_metrics_json
    procedure :: set_status => ctx_set_status
    procedure :: report_progress => ctx_report_progress
    procedure :: report_early_exit => ctx_report_early_exit
    procedure :: best_validation => ctx_best_validation
    procedure :: set_run_metadata => ctx_set_run_metadata
    procedure :: get_run_metadata => ctx_get_run_metadata
    procedure :: flush => ctx_flush
    procedure :: tensorboard_path => ctx_tensorboard_path
    procedure :: upload_tensorboard_files => ctx_upload_tensorboard_files
    procedure :: flush_tensorboard => ctx_flush_tensorboard
    ! searcher
    procedure :: next_op => ctx_next_op
    procedure :: configured_units => ctx_configured_units
    ! distributed
    procedure :: rank => ctx_rank
    procedure :: size => ctx_size
    procedure :: local_rank => ctx_local_rank
    procedure :: local_size => ctx_local_size
    procedure :: cross_rank => ctx_cross_rank
    procedure :: cross_size => ctx_cross_size
    procedure :: barrier => ctx_barrier
    procedure :: allgather_real64 => ctx_allgather_real64
    procedure :: allgather_int64 => ctx_allgather_int64
    procedure :: broadcast_real64 => ctx_broadcast_real64
    procedure :: broadcast_int64 => ctx_broadcast_int64
    final :: ctx_final
  end type

  !> An open `store_path` scope. `commit()` publishes it; `abort()` (or finalization) discards it.
  type, public :: det_store
    type(c_ptr) :: ptr = c_null_ptr
  contains
    procedure :: path => store_path_get
    procedure :: storage_id => store_storage_id
    procedure :: commit => store_commit
    procedure :: abort => store_abort
    procedure :: is_open => store_is_open
    final :: store_final
  end type

  !> An open `restore_path` scope: the files are under `path()` until `close()`.
  type, public :: det_restore
    type(c_ptr) :: ptr = c_null_ptr
  contains
    procedure :: path => restore_path_get
    procedure :: storage_id => restore_storage_id_get
    procedure :: close => restore_close
    procedure :: is_open => restore_is_open
    final :: restore_final
  end type

  !> A searcher operation; `is_valid()` is false when the searcher has no more.
  type, public :: det_searcher_op
    type(c_ptr) :: ptr = c_null_ptr
  contains
    procedure :: is_valid => op_is_valid
    procedure :: length => op_length
    procedure :: report_progress => op_report_progress
    procedure :: report_completed => op_report_completed
    procedure :: free => op_free
    final :: op_final
  end type

  !> A TensorBoard event-file writer (`det_tb_writer_*`): `open(dir)`, `add_scalar`,
  !> `add_histogram`, `flush`, `close`. Finalization closes a writer that is still open.
  type, public :: det_tb_writer
    type(c_ptr) :: ptr = c_null_ptr
  contains
    procedure :: open => tb_open
    procedure :: add_scalar => tb_add_scalar
    procedure :: add_histogram => tb_add_histogram
    procedure :: flush => tb_flush
    procedure :: close => tb_close
    procedure :: is_open => tb_is_open
    final :: tb_final
  end type

  public :: detcore_last_error, detcore_status_name, detcore_version, detcore_set_log_level, &
       detcore_distributed_default, detcore_distributed_from_env, detcore_c_string, detcore_set_c_string, &
       detcore_cluster_info_json

  ! A failure found in this module (not in the C library), for detcore_last_error().
  character(len=:), allocatable :: local_error
  logical :: local_error_pending = .false.

contains

  ! ---- helpers ------------------------------------------------------------------------------------------

  !> `s` without trailing blanks, NUL-terminated, for a `character(kind=c_char), dimension(*)` argument.
  pure function cstr(s) result(c)
    character(len=*), intent(in) :: s
    character(kind=c_char, len=len_trim(s) + 1) :: c
    c = trim(s) // c_null_char
  end function

  !> A NUL-terminated copy of `s` (trailing blanks removed) in an array whose address can be taken.
  subroutine cbuf(s, buf)
    character(len=*), intent(in) :: s
    character(kind=c_char), allocatable, intent(out) :: buf(:)
    integer :: i, n
    n = len_trim(s)
    allocate(buf(n + 1))
    do i = 1, n
      buf(i) = s(i:i)
    end do
    buf(n + 1) = c_null_char
  end subroutine

  !> A Fortran copy of the C string at `p` ('' for NULL). Does not free it.
  function detcore_c_string(p) result(s)
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: s
    character(kind=c_char), pointer :: chars(:)
    integer(c_size_t) :: n
    integer :: i
    if (.not. c_associated(p)) then
      s = ''
      return
    end if
    n = c_strlen(p)
    allocate(character(len=n) :: s)
    if (n == 0) return
    call c_f_pointer(p, chars, [n])
    do i = 1, int(n)
      s(i:i) = chars(i)
    end do
  end function

  !> Copy and free a detcore string (`char **out`).
  function take_c_string(p) result(s)
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: s
    s = detcore_c_string(p)
    call det_string_free(p)
  end function

  !> The name of a status code, e.g. "DET_ERR_NOT_FOUND".
  function detcore_status_name(status) result(s)
    integer, intent(in) :: status
    character(len=:), allocatable :: s
    s = detcore_c_string(det_status_name(int(status, c_int32_t)))
  end function

  !> The message of the last failure on this thread (detcore's or this module's).
  function detcore_last_error() result(s)
    character(len=:), allocatable :: s
    if (local_error_pending) then
      s = local_error
    else
      s = detcore_c_string(det_last_error_message())
    end if
  end function

  !> The library version, "MAJOR.MINOR.PATCH".
  function detcore_version() result(s)
    character(len=:), allocatable :: s
    s = detcore_c_string(det_version())
  end function

  !> Set the process-wide log threshold (DET_LOG_LEVEL_*).
  subroutine detcore_set_log_level(level, stat)
    integer, intent(in) :: level
    integer, intent(out), optional :: stat
    call check(det_log_set_level(int(level, c_int32_t)), stat)
  end subroutine

  !> Report a C status: to `stat` if present, else stop the program on failure.
  subroutine check(st, stat)
    integer(c_int32_t), intent(in) :: st
    integer, intent(out), optional :: stat
    local_error_pending = .false.
    if (present(stat)) then
      stat = int(st)
    else if (st /= DET_OK) then
      error stop "detcore: " // detcore_status_name(int(st)) // ": " // detcore_c_string(det_last_error_message())
    end if
  end subroutine

  !> Report a failure found in this module.
  subroutine fail(st, msg, stat)
    integer(c_int32_t), intent(in) :: st
    character(len=*), intent(in) :: msg
    integer, intent(out), optional :: stat
    if (present(stat)) then
      stat = int(st)
      local_error = msg
      local_error_pending = .true.
    else
      error stop "detcore: " // detcore_status_name(int(st)) // ": " // msg
    end if
  end subroutine

  !> A steps count of any integer kind as int64.
  function to_i64(steps) result(n)
    class(*), intent(in) :: steps
    integer(c_int64_t) :: n
    select type (steps)
    type is (integer(int32))
      n = int(steps, c_int64_t)
    type is (integer(int64))
      n = int(steps, c_int64_t)
    class default
      error stop "detcore: steps_completed must be an integer (of kind int32 or int64)"
    end select
  end function

  function i64_text(n) result(s)
    integer(c_int64_t), intent(in) :: n
    character(len=:), allocatable :: s
    character(len=24) :: buf
    write(buf, '(i0)') n
    s = trim(buf)
  end function

  ! ---- distributed configuration ------------------------------------------------------------------------

  !> Rank 0 of 1, default port and timeouts.
  function detcore_distributed_default() result(cfg)
    type(det_distributed_config) :: cfg
    call check(det_distributed_config_default(cfg, c_sizeof(cfg)))
  end function

  !> The ranks as `launcher` (DET_LAUNCHER_*) exported them.
  subroutine detcore_distributed_from_env(cfg, launcher, stat)
    type(det_distributed_config), intent(inout) :: cfg
    integer, intent(in), optional :: launcher
    integer, intent(out), optional :: stat
    integer(c_int32_t) :: kind
    kind = DET_LAUNCHER_AUTO
    if (present(launcher)) kind = int(launcher, c_int32_t)
    if (cfg%struct_size == 0) cfg = detcore_distributed_default()
    call check(det_distributed_from_env(kind, cfg), stat)
  end subroutine

  !> `determined.get_cluster_info()` without a context: the task container's info files
  !> (`info_dir`, else $DET_CLUSTER_INFO_DIR, else /run/determined/info) as one JSON object, or ''
  !> off-cluster. The object holds the session token: do not log it.
  function detcore_cluster_info_json(info_dir, stat) result(s)
    character(len=*), intent(in), optional :: info_dir
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    character(kind=c_char), allocatable, target :: bd(:)
    type(c_ptr) :: pd, p
    integer(c_int32_t) :: st
    pd = c_null_ptr
    if (present(info_dir)) then
      call cbuf(info_dir, bd)
      pd = c_loc(bd)
    end if
    p = c_null_ptr
    st = det_cluster_info_json(pd, p)
    s = ''
    if (st == DET_OK) s = take_c_string(p)
    call check(st, stat)
  end function

  ! ---- det_context: lifecycle ---------------------------------------------------------------------------

  !> `core.init(...)`. Every argument is optional; absent ones keep detcore's defaults (see
  !> det_init_options in detcore.h).
  subroutine ctx_init(self, checkpoint_storage, run_name, run_dir, hparams_json, searcher_max_length, &
       preempt_mode, tensorboard_mode, preempt_signals, disable_signal_handlers, async_checkpoints, &
       halt_file, end_time, halt_margin_seconds, distributed, chief_ip, cluster_info_dir, &
       report_queue_capacity, close_timeout_seconds, job_id, slurm_requeue, save_trial_latest, &
       save_trial_best, searcher_metric, smaller_is_better, stat)
    class(det_context), intent(inout) :: self
    character(len=*), intent(in), optional :: checkpoint_storage, run_name, run_dir, hparams_json, &
         halt_file, chief_ip, cluster_info_dir, job_id, searcher_metric
    integer, intent(in), optional :: searcher_max_length, preempt_mode, tensorboard_mode, report_queue_capacity
    integer, intent(in), optional :: save_trial_latest, save_trial_best
    integer, intent(in), optional :: preempt_signals(:)
    logical, intent(in), optional :: disable_signal_handlers, async_checkpoints, slurm_requeue, &
         smaller_is_better
    real(real64), intent(in), optional :: end_time, halt_margin_seconds, close_timeout_seconds
    type(det_distributed_config), intent(in), optional :: distributed
    integer, intent(out), optional :: stat
    type(det_init_options), target :: o
    type(det_distributed_config), target :: d
    character(kind=c_char), allocatable, target :: b_storage(:), b_run_name(:), b_run_dir(:), &
         b_hparams(:), b_halt(:), b_chief(:), b_info(:), b_job(:), b_metric(:)
    integer(c_int32_t), allocatable, target :: sigs(:)
    type(c_ptr) :: h
    integer(c_int32_t) :: st

    if (c_associated(self%ptr)) then
      call fail(DET_ERR_STATE, "det_context%init: the context is already open; close it first", stat)
      return
    end if
    st = det_init_options_default(o, c_sizeof(o))
    if (st /= DET_OK) then
      call check(st, stat)
      return
    end if
    if (present(checkpoint_storage)) then
      call cbuf(checkpoint_storage, b_storage)
      o%checkpoint_storage = c_loc(b_storage)
    end if
    if (present(run_name)) then
      call cbuf(run_name, b_run_name)
      o%run_name = c_loc(b_run_name)
    end if
    if (present(run_dir)) then
      call cbuf(run_dir, b_run_dir)
      o%run_dir = c_loc(b_run_dir)
    end if
    if (present(hparams_json)) then
      call cbuf(hparams_json, b_hparams)
      o%hparams_json = c_loc(b_hparams)
    end if
    if (present(searcher_max_length)) o%searcher_max_length = int(searcher_max_length, c_int64_t)
    if (present(preempt_mode)) o%preempt_mode = int(preempt_mode, c_int32_t)
    if (present(tensorboard_mode)) o%tensorboard_mode = int(tensorboard_mode, c_int32_t)
    if (present(preempt_signals)) then
      allocate(sigs(max(1, size(preempt_signals))))
      sigs(1:size(preempt_signals)) = int(preempt_signals, c_int32_t)
      o%preempt_signals = c_loc(sigs)
      o%preempt_signals_len = int(size(preempt_signals), c_size_t)
    end if
    if (present(disable_signal_handlers)) o%disable_signal_handlers = logical(disable_signal_handlers, c_bool)
    if (present(async_checkpoints)) o%async_checkpoints = logical(async_checkpoints, c_bool)
    if (present(halt_file)) then
      call cbuf(halt_file, b_halt)
      o%halt_file = c_loc(b_halt)
    end if
    if (present(end_time)) o%end_time = end_time
    if (present(halt_margin_seconds)) o%halt_margin_seconds = halt_margin_seconds
    if (present(distributed) .or. present(chief_ip) .or. present(job_id)) then
      if (present(distributed)) then
        d = distributed
        if (d%struct_size == 0) d%struct_size = c_sizeof(d)
      else
        d = detcore_distributed_default()
      end if
      if (present(chief_ip)) then
        call cbuf(chief_ip, b_chief)
        d%chief_ip = c_loc(b_chief)
      end if
      if (present(job_id)) then
        call cbuf(job_id, b_job)
        d%job_id = c_loc(b_job)
      end if
      o%distributed = c_loc(d)
    end if
    if (present(cluster_info_dir)) then
      call cbuf(cluster_info_dir, b_info)
      o%cluster_info_dir = c_loc(b_info)
    end if
    if (present(report_queue_capacity)) o%report_queue_capacity = int(report_queue_capacity, c_size_t)
    if (present(close_timeout_seconds)) o%close_timeout_seconds = close_timeout_seconds
    if (present(slurm_requeue)) o%slurm_requeue = logical(slurm_requeue, c_bool)
    if (present(save_trial_latest)) o%save_trial_latest = int(save_trial_latest, c_int32_t)
    if (present(save_trial_best)) o%save_trial_best = int(save_trial_best, c_int32_t)
    if (present(searcher_metric)) then
      call cbuf(searcher_metric, b_metric)
      o%searcher_metric = c_loc(b_metric)
    end if
    if (present(smaller_is_better)) o%smaller_is_better = merge(1_c_int32_t, 0_c_int32_t, smaller_is_better)
    h = c_null_ptr
    st = det_core_init(o, h)
    if (st == DET_OK) self%ptr = h
    call check(st, stat)
  end subroutine

  !> Flush reports, join threads, release the context (closed afterwards whatever the result).
  subroutine ctx_close(self, stat)
    class(det_context), intent(inout) :: self
    integer, intent(out), optional :: stat
    type(c_ptr) :: h
    h = self%ptr
    self%ptr = c_null_ptr
    call check(det_core_close(h), stat)
  end subroutine

  logical function ctx_is_open(self)
    class(det_context), intent(in) :: self
    ctx_is_open = c_associated(self%ptr)
  end function

  subroutine ctx_final(self)
    type(det_context), intent(inout) :: self
    integer(c_int32_t) :: st
    if (c_associated(self%ptr)) then
      st = det_core_close(self%ptr)
      if (st /= DET_OK) write(error_unit, '(a)') "detcore: closing a det_context at finalization: " // &
           detcore_c_string(det_last_error_message())
      self%ptr = c_null_ptr
    end if
  end subroutine

  ! ---- det_context: info --------------------------------------------------------------------------------

  logical function ctx_on_cluster(self, stat)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    logical(c_bool) :: b
    b = .false.
    call check(det_info_is_on_cluster(self%ptr, b), stat)
    ctx_on_cluster = b
  end function

  !> The storage id to resume from, or '' for a fresh start.
  function ctx_latest_checkpoint(self, stat) result(s)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    st = det_info_latest_checkpoint(self%ptr, p)
    s = ''
    if (st == DET_OK) s = take_c_string(p)
    call check(st, stat)
  end function

  function ctx_steps_completed(self, stat) result(n)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    integer(int64) :: n
    integer(c_int64_t) :: v
    v = 0
    call check(det_info_steps_completed(self%ptr, v), stat)
    n = v
  end function

  function ctx_hparams_json(self, stat) result(s)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    st = det_info_hparams_json(self%ptr, p)
    s = ''
    if (st == DET_OK) s = take_c_string(p)
    call check(st, stat)
  end function

  !> A hyperparameter as real(8); `default` is returned when it is absent.
  function ctx_hparam_real(self, name, default, stat) result(v)
    class(det_context), intent(in) :: self
    character(len=*), intent(in) :: name
    real(real64), intent(in), optional :: default
    integer, intent(out), optional :: stat
    real(real64) :: v
    real(c_double) :: x
    integer(c_int32_t) :: st
    x = 0
    if (present(default)) then
      st = det_info_get_hparam_f64_or(self%ptr, cstr(name), real(default, c_double), x)
    else
      st = det_info_get_hparam_f64(self%ptr, cstr(name), x)
    end if
    v = x
    call check(st, stat)
  end function

  !> A hyperparameter as integer(8); `default` is returned when it is absent.
  function ctx_hparam_int(self, name, default, stat) result(v)
    class(det_context), intent(in) :: self
    character(len=*), intent(in) :: name
    integer, intent(in), optional :: default
    integer, intent(out), optional :: stat
    integer(int64) :: v
    integer(c_int64_t) :: x
    integer(c_int32_t) :: st
    x = 0
    if (present(default)) then
      st = det_info_get_hparam_i64_or(self%ptr, cstr(name), int(default, c_int64_t), x)
    else
      st = det_info_get_hparam_i64(self%ptr, cstr(name), x)
    end if
    v = x
    call check(st, stat)
  end function

  !> A string hyperparameter; `default` is returned when it is absent.
  function ctx_hparam_str(self, name, default, stat) result(s)
    class(det_context), intent(in) :: self
    character(len=*), intent(in) :: name
    character(len=*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    character(kind=c_char), allocatable, target :: b_default(:)
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    if (present(default)) then
      call cbuf(default, b_default)
      st = det_info_get_hparam_str_or(self%ptr, cstr(name), c_loc(b_default), p)
    else
      st = det_info_get_hparam_str(self%ptr, cstr(name), p)
    end if
    s = ''
    if (st == DET_OK) s = take_c_string(p)
    call check(st, stat)
  end function

  function ctx_run_name(self, stat) result(s)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    st = det_info_run_name(self%ptr, p)
    s = ''
    if (st == DET_OK) s = take_c_string(p)
    call check(st, stat)
  end function

  function ctx_run_dir(self, stat) result(s)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    st = det_info_run_dir(self%ptr, p)
    s = ''
    if (st == DET_OK) s = take_c_string(p)
    call check(st, stat)
  end function

  ! ---- det_context: on-cluster info (Python's ClusterInfo) ------------------------------------------
  ! Off-cluster, and for the trial's values in on-cluster tasks that are not trials, these values
  ! are unknown: detcore answers DET_ERR_UNSUPPORTED (to `stat`, or `error stop` without it), or,
  ! when `default` is given, the getter returns `default` with DET_OK. Off-cluster the counts are
  ! 0, without an error. Lists are read one item at a time (`container_addr(i)`, `gpu_uuid(i)`,
  ! `slot_id(i)`, `container_slot_count(i)`), numbered from 0 as in C and as container ranks are
  ! (array results would make gfortran 12 -Wall warn in the caller's code).

  function info_i64(st0, x, default, stat) result(v)
    integer(c_int32_t), intent(in) :: st0
    integer(c_int64_t), intent(in) :: x
    class(*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    integer(int64) :: v
    integer(c_int32_t) :: st
    st = st0
    v = 0
    if (st == DET_OK) v = x
    if (st == DET_ERR_UNSUPPORTED .and. present(default)) then
      v = to_i64(default)
      st = DET_OK
    end if
    call check(st, stat)
  end function

  !> Call a `det_info_*` string getter and convert its answer as `info_str` does.
  function get_info_str(self, getter, default, stat) result(s)
    class(det_context), intent(in) :: self
    procedure(det_info_str_getter) :: getter
    character(len=*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    p = c_null_ptr
    s = info_str(getter(self%ptr, p), p, default, stat)
  end function

  function info_str(st0, p, default, stat) result(s)
    integer(c_int32_t), intent(in) :: st0
    type(c_ptr), intent(in) :: p
    character(len=*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    integer(c_int32_t) :: st
    st = st0
    s = ''
    if (st == DET_OK) then
      s = take_c_string(p)
    else if (st == DET_ERR_UNSUPPORTED .and. present(default)) then
      s = default
      st = DET_OK
    end if
    call check(st, stat)
  end function

  !> `info.trial.trial_id`.
  function ctx_trial_id(self, default, stat) result(v)
    class(det_context), intent(in) :: self
    class(*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    integer(int64) :: v
    integer(c_int64_t) :: x
    integer(c_int32_t) :: st
    x = 0
    st = det_info_trial_id(self%ptr, x)
    v = info_i64(st, x, default, stat)
  end function

  !> `info.trial.experiment_id`.
  function ctx_experiment_id(self, default, stat) result(v)
    class(det_context), intent(in) :: self
    class(*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    integer(int64) :: v
    integer(c_int64_t) :: x
    integer(c_int32_t) :: st
    x = 0
    st = det_info_experiment_id(self%ptr, x)
    v = info_i64(st, x, default, stat)
  end function

  !> `info.trial.trial_seed` (a C uint32_t, returned as integer(8), never negative).
  function ctx_trial_seed(self, default, stat) result(v)
    class(det_context), intent(in) :: self
    class(*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    integer(int64) :: v
    integer(c_int32_t) :: x, st
    integer(c_int64_t) :: u
    x = 0
    st = det_info_trial_seed(self%ptr, x)
    u = int(x, c_int64_t)
    if (u < 0) u = u + 4294967296_c_int64_t
    v = info_i64(st, u, default, stat)
  end function

  !> The trial's run id: 1 for its first allocation, +1 for every restart.
  function ctx_trial_run_id(self, default, stat) result(v)
    class(det_context), intent(in) :: self
    class(*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    integer(int64) :: v
    integer(c_int64_t) :: x
    integer(c_int32_t) :: st
    x = 0
    st = det_info_trial_run_id(self%ptr, x)
    v = info_i64(st, x, default, stat)
  end function

  !> The experiment config as JSON text.
  function ctx_experiment_config_json(self, default, stat) result(s)
    class(det_context), intent(in) :: self
    character(len=*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    s = get_info_str(self, det_info_experiment_config_json, default, stat)
  end function

  !> `info.user_data`: the config's `data` field as JSON text ('{}' for tasks that are not trials).
  function ctx_user_data_json(self, default, stat) result(s)
    class(det_context), intent(in) :: self
    character(len=*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    s = get_info_str(self, det_info_user_data_json, default, stat)
  end function

  !> "TRIAL", "NOTEBOOK", "SHELL", "COMMAND", "TENSORBOARD", "CHECKPOINT_GC", ...
  function ctx_task_type(self, default, stat) result(s)
    class(det_context), intent(in) :: self
    character(len=*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    s = get_info_str(self, det_info_task_type, default, stat)
  end function

  function ctx_task_id(self, default, stat) result(s)
    class(det_context), intent(in) :: self
    character(len=*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    s = get_info_str(self, det_info_task_id, default, stat)
  end function

  function ctx_allocation_id(self, default, stat) result(s)
    class(det_context), intent(in) :: self
    character(len=*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    s = get_info_str(self, det_info_allocation_id, default, stat)
  end function

  function ctx_cluster_id(self, default, stat) result(s)
    class(det_context), intent(in) :: self
    character(len=*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    s = get_info_str(self, det_info_cluster_id, default, stat)
  end function

  function ctx_agent_id(self, default, stat) result(s)
    class(det_context), intent(in) :: self
    character(len=*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    s = get_info_str(self, det_info_agent_id, default, stat)
  end function

  function ctx_master_url(self, default, stat) result(s)
    class(det_context), intent(in) :: self
    character(len=*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    s = get_info_str(self, det_info_master_url, default, stat)
  end function

  !> This container's rank among the allocation's containers (0 for tasks that are not trials).
  integer function ctx_container_rank(self, default, stat)
    class(det_context), intent(in) :: self
    integer, intent(in), optional :: default
    integer, intent(out), optional :: stat
    integer(c_int32_t) :: x, st
    x = 0
    st = det_info_container_rank(self%ptr, x)
    ctx_container_rank = int(info_i64(st, int(x, c_int64_t), default, stat))
  end function

  !> The number of containers of the allocation (1 for tasks that are not trials); 0 off-cluster.
  integer function ctx_container_count(self, stat)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    ctx_container_count = info_count(self, 1, stat)
  end function

  !> The address of the container of rank `index` (0 … container_count()-1, as container_rank();
  !> container 0 is the chief's).
  function ctx_container_addr(self, index, stat) result(s)
    class(det_context), intent(in) :: self
    integer, intent(in) :: index
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    if (index < 0) then
      s = ''
      call fail(DET_ERR_INVALID_ARGUMENT, "container_addr: index " // i64_text(int(index, c_int64_t)) // &
           " is negative (containers are numbered from 0)", stat)
      return
    end if
    st = det_info_container_addr(self%ptr, int(index, c_size_t), p)
    s = info_str(st, p, stat=stat)
  end function

  !> The number of GPU UUIDs of this container; 0 off-cluster or without resources.json.
  integer function ctx_gpu_uuid_count(self, stat)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    ctx_gpu_uuid_count = info_count(self, 2, stat)
  end function

  !> GPU UUID `index` of this container (0 … gpu_uuid_count()-1, as CUDA numbers devices).
  function ctx_gpu_uuid(self, index, stat) result(s)
    class(det_context), intent(in) :: self
    integer, intent(in) :: index
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    if (index < 0) then
      s = ''
      call fail(DET_ERR_INVALID_ARGUMENT, "gpu_uuid: index " // i64_text(int(index, c_int64_t)) // &
           " is negative (GPUs are numbered from 0)", stat)
      return
    end if
    st = det_info_gpu_uuid(self%ptr, int(index, c_size_t), p)
    s = info_str(st, p, stat=stat)
  end function

  !> which = 1: containers; 2: GPU UUIDs; 3: slot ids. 0 off-cluster.
  integer function info_count(self, which, stat)
    class(det_context), intent(in) :: self
    integer, intent(in) :: which
    integer, intent(out), optional :: stat
    integer(c_size_t) :: n
    integer(c_int32_t) :: st
    n = 0
    select case (which)
    case (1)
      st = det_info_container_count(self%ptr, n)
    case (2)
      st = det_info_gpu_uuid_count(self%ptr, n)
    case default
      st = det_info_slot_id_count(self%ptr, n)
    end select
    if (st == DET_ERR_UNSUPPORTED) then
      st = DET_OK
      n = 0
    end if
    info_count = int(n)
    call check(st, stat)
  end function

  !> The number of slots (GPUs) of the container of rank `index` (0 … container_count()-1).
  integer function ctx_container_slot_count(self, index, stat)
    class(det_context), intent(in) :: self
    integer, intent(in) :: index
    integer, intent(out), optional :: stat
    ctx_container_slot_count = info_item(self, 1, index, stat)
  end function

  !> The number of slots assigned to this container; 0 off-cluster.
  integer function ctx_slot_id_count(self, stat)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    ctx_slot_id_count = info_count(self, 3, stat)
  end function

  !> Slot id `index` of this container (0 … slot_id_count()-1).
  integer function ctx_slot_id(self, index, stat)
    class(det_context), intent(in) :: self
    integer, intent(in) :: index
    integer, intent(out), optional :: stat
    ctx_slot_id = info_item(self, 2, index, stat)
  end function

  !> which = 1: a container's slot count; 2: a slot id.
  integer function info_item(self, which, index, stat)
    class(det_context), intent(in) :: self
    integer, intent(in) :: which, index
    integer, intent(out), optional :: stat
    integer(c_int32_t) :: x, st
    info_item = 0
    if (index < 0) then
      call fail(DET_ERR_INVALID_ARGUMENT, "index " // i64_text(int(index, c_int64_t)) // &
           " is negative (items are numbered from 0)", stat)
      return
    end if
    x = 0
    if (which == 1) then
      st = det_info_container_slot_count(self%ptr, int(index, c_size_t), x)
    else
      st = det_info_slot_id(self%ptr, int(index, c_size_t), x)
    end if
    if (st == DET_OK) info_item = int(x)
    call check(st, stat)
  end function

  !> `info.trial._debug`: the experiment config's `debug` flag (`default` off-cluster and for tasks
  !> that are not trials; without it those fail with DET_ERR_UNSUPPORTED).
  logical function ctx_trial_debug(self, default, stat)
    class(det_context), intent(in) :: self
    logical, intent(in), optional :: default
    integer, intent(out), optional :: stat
    logical(c_bool) :: b
    integer(c_int32_t) :: st
    b = .false.
    st = det_info_trial_debug(self%ptr, b)
    ctx_trial_debug = b
    if (st == DET_ERR_UNSUPPORTED .and. present(default)) then
      ctx_trial_debug = default
      st = DET_OK
    end if
    call check(st, stat)
  end function

  !> `info.trial._inter_node_network_interface`: the interface the experiment config names for
  !> traffic between nodes ('' when none is set).
  function ctx_inter_node_network_interface(self, default, stat) result(s)
    class(det_context), intent(in) :: self
    character(len=*), intent(in), optional :: default
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    s = get_info_str(self, det_info_inter_node_network_interface, default, stat)
  end function

  !> `experimental.report_task_using_checkpoint(checkpoint)`: record that this trial uses the
  !> checkpoint (its metrics are listed with it). Off-cluster nothing is recorded.
  subroutine ctx_report_task_using_checkpoint(self, checkpoint_uuid, stat)
    class(det_context), intent(inout) :: self
    character(len=*), intent(in) :: checkpoint_uuid
    integer, intent(out), optional :: stat
    call check(det_experimental_report_task_using_checkpoint(self%ptr, cstr(checkpoint_uuid)), stat)
  end subroutine

  !> `experimental.report_task_using_model_version(model_version)`: the version's checkpoint, the
  !> model's id and the version's number.
  subroutine ctx_report_task_using_model_version(self, checkpoint_uuid, model_id, model_version, stat)
    class(det_context), intent(inout) :: self
    character(len=*), intent(in) :: checkpoint_uuid
    integer, intent(in) :: model_id, model_version
    integer, intent(out), optional :: stat
    call check(det_experimental_report_task_using_model_version(self%ptr, cstr(checkpoint_uuid), &
         int(model_id, c_int32_t), int(model_version, c_int32_t)), stat)
  end subroutine

  !> `alert(title, description, level)`: fire the experiment's custom webhooks (`level`: a
  !> DET_ALERT_LEVEL_* value, default INFO). Off-cluster the alert is only logged.
  subroutine ctx_alert(self, title, description, level, stat)
    class(det_context), intent(inout) :: self
    character(len=*), intent(in), optional :: title, description
    integer, intent(in), optional :: level
    integer, intent(out), optional :: stat
    character(kind=c_char), allocatable, target :: bt(:), bd(:)
    type(c_ptr) :: pt, pd
    integer(c_int32_t) :: lv
    pt = c_null_ptr
    pd = c_null_ptr
    if (present(title)) then
      call cbuf(title, bt)
      pt = c_loc(bt)
    end if
    if (present(description)) then
      call cbuf(description, bd)
      pd = c_loc(bd)
    end if
    lv = DET_ALERT_LEVEL_INFO
    if (present(level)) lv = int(level, c_int32_t)
    call check(det_core_alert(self%ptr, pt, pd, lv), stat)
  end subroutine

  ! ---- det_context: profiler ---------------------------------------------------------------------------

  !> `profiler.on(sampling_interval, samples_per_report)` (defaults 1 s and 10): sample the
  !> machine on a background thread and report the means as Determined's profiler groups.
  subroutine ctx_profiler_on(self, sampling_interval, samples_per_report, stat)
    class(det_context), intent(inout) :: self
    real(real64), intent(in), optional :: sampling_interval
    integer, intent(in), optional :: samples_per_report
    integer, intent(out), optional :: stat
    real(c_double) :: si
    integer(c_int32_t) :: n
    si = 1
    if (present(sampling_interval)) si = sampling_interval
    n = 10
    if (present(samples_per_report)) n = int(samples_per_report, c_int32_t)
    call check(det_profiler_on(self%ptr, si, n), stat)
  end subroutine

  !> `profiler.off()`: stop sampling (the unfinished period is reported). Idempotent.
  subroutine ctx_profiler_off(self, stat)
    class(det_context), intent(inout) :: self
    integer, intent(out), optional :: stat
    call check(det_profiler_off(self%ptr), stat)
  end subroutine

  ! ---- det_context: TensorBoard -----------------------------------------------------------------------

  !> `get_tensorboard_path()`: the local TensorBoard folder; files written there (a
  !> det_tb_writer's) are uploaded with the metrics' event files.
  function ctx_tensorboard_path(self, stat) result(s)
    class(det_context), intent(inout) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    st = det_train_get_tensorboard_path(self%ptr, p)
    s = ''
    if (st == DET_OK) s = take_c_string(p)
    call check(st, stat)
  end function

  !> `upload_tensorboard_files(selector, mangler)`, tensorboard_mode=DET_TENSORBOARD_MODE_MANUAL
  !> only. `selector` is a bind(c) function like upload's (it gets names relative to the folder);
  !> `mangler` a bind(c) function
  !>   logical(c_bool) function m(path, rank, name, name_size, userdata)
  !>     type(c_ptr), value :: path, name, userdata; integer(c_int32_t), value :: rank
  !>     integer(c_size_t), value :: name_size
  !> that keeps `name` (a copy of `path`) or writes a new relative name into it with
  !> detcore_set_c_string(name, name_size, new_name); returning .false. abandons the call. Pass
  !> them with c_funloc. Returns once the files are listed; flush_tensorboard() waits for them.
  subroutine ctx_upload_tensorboard_files(self, selector, mangler, selector_userdata, mangler_userdata, stat)
    class(det_context), intent(inout) :: self
    type(c_funptr), intent(in), optional :: selector, mangler
    type(c_ptr), intent(in), optional :: selector_userdata, mangler_userdata
    integer, intent(out), optional :: stat
    type(c_funptr) :: sel, man
    type(c_ptr) :: sud, mud
    sel = c_null_funptr
    if (present(selector)) sel = selector
    man = c_null_funptr
    if (present(mangler)) man = mangler
    sud = c_null_ptr
    if (present(selector_userdata)) sud = selector_userdata
    mud = c_null_ptr
    if (present(mangler_userdata)) mud = mangler_userdata
    call check(det_train_upload_tensorboard_files(self%ptr, sel, sud, man, mud), stat)
  end subroutine

  !> Wait until the TensorBoard files are in the checkpoint storage (at most `timeout_seconds`,
  !> default 60).
  subroutine ctx_flush_tensorboard(self, timeout_seconds, stat)
    class(det_context), intent(inout) :: self
    real(real64), intent(in), optional :: timeout_seconds
    integer, intent(out), optional :: stat
    real(c_double) :: t
    t = 60
    if (present(timeout_seconds)) t = timeout_seconds
    call check(det_train_flush_tensorboard(self%ptr, t), stat)
  end subroutine

  !> For TensorBoard name manglers: write `s` (trailing blanks removed), NUL-terminated, into the
  !> C buffer `buf` of `buf_size` bytes. False (and nothing written) when it does not fit.
  logical function detcore_set_c_string(buf, buf_size, s)
    type(c_ptr), intent(in) :: buf
    integer(c_size_t), intent(in) :: buf_size
    character(len=*), intent(in) :: s
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    n = len_trim(s)
    detcore_set_c_string = .false.
    if (.not. c_associated(buf) .or. int(n, c_size_t) >= buf_size) return
    call c_f_pointer(buf, chars, [n + 1])
    do i = 1, n
      chars(i) = s(i:i)
    end do
    chars(n + 1) = c_null_char
    detcore_set_c_string = .true.
  end function

  ! ---- det_tb_writer ---------------------------------------------------------------------------------

  !> Open a writer of event files in `dir` (created at the first write), e.g.
  !> `ctx%tensorboard_path() // "/solver"`.
  subroutine tb_open(self, dir, stat)
    class(det_tb_writer), intent(inout) :: self
    character(len=*), intent(in) :: dir
    integer, intent(out), optional :: stat
    type(c_ptr) :: h
    integer(c_int32_t) :: st
    if (c_associated(self%ptr)) then
      call fail(DET_ERR_STATE, "det_tb_writer%open: the writer is already open; close it first", stat)
      return
    end if
    h = c_null_ptr
    st = det_tb_writer_open(cstr(dir), h)
    if (st == DET_OK) self%ptr = h
    call check(st, stat)
  end subroutine

  !> The scalar `tag` = `value` at `step` (any integer kind).
  subroutine tb_add_scalar(self, tag, step, value, stat)
    class(det_tb_writer), intent(inout) :: self
    character(len=*), intent(in) :: tag
    class(*), intent(in) :: step
    real(real64), intent(in) :: value
    integer, intent(out), optional :: stat
    if (.not. tb_live(self, "add_scalar", stat)) return
    call check(det_tb_writer_add_scalar(self%ptr, cstr(tag), to_i64(step), real(value, c_double)), stat)
  end subroutine

  !> The histogram of `values` at `step` (non-finite values are not counted).
  subroutine tb_add_histogram(self, tag, step, values, stat)
    class(det_tb_writer), intent(inout) :: self
    character(len=*), intent(in) :: tag
    class(*), intent(in) :: step
    real(real64), intent(in) :: values(:)
    integer, intent(out), optional :: stat
    if (.not. tb_live(self, "add_histogram", stat)) return
    call check(det_tb_writer_add_histogram(self%ptr, cstr(tag), to_i64(step), values, &
         int(size(values), c_size_t)), stat)
  end subroutine

  !> Write the events added so far.
  subroutine tb_flush(self, stat)
    class(det_tb_writer), intent(inout) :: self
    integer, intent(out), optional :: stat
    if (.not. tb_live(self, "flush", stat)) return
    call check(det_tb_writer_flush(self%ptr), stat)
  end subroutine

  !> Write what is buffered and close the file (closed afterwards whatever the result).
  subroutine tb_close(self, stat)
    class(det_tb_writer), intent(inout) :: self
    integer, intent(out), optional :: stat
    type(c_ptr) :: h
    if (.not. tb_live(self, "close", stat)) return
    h = self%ptr
    self%ptr = c_null_ptr
    call check(det_tb_writer_close(h), stat)
  end subroutine

  logical function tb_is_open(self)
    class(det_tb_writer), intent(in) :: self
    tb_is_open = c_associated(self%ptr)
  end function

  logical function tb_live(self, what, stat)
    class(det_tb_writer), intent(in) :: self
    character(len=*), intent(in) :: what
    integer, intent(out), optional :: stat
    tb_live = c_associated(self%ptr)
    if (.not. tb_live) call fail(DET_ERR_STATE, "det_tb_writer%" // what // &
         ": the writer is not open (never opened, or already closed)", stat)
  end function

  subroutine tb_final(self)
    type(det_tb_writer), intent(inout) :: self
    integer(c_int32_t) :: st
    if (c_associated(self%ptr)) then
      st = det_tb_writer_close(self%ptr)
      if (st /= DET_OK) write(error_unit, '(a)') "detcore: closing a det_tb_writer at finalization: " // &
           detcore_c_string(det_last_error_message())
      self%ptr = c_null_ptr
    end if
  end subroutine

  ! ---- det_context: checkpoints -------------------------------------------------------------------------

  !> Begin `store_path`: with `steps_completed` (any integer kind), the metadata is
  !> {"steps_completed": n} plus the entries of `metadata_json` if given
  !> (det_ckpt_store_path_begin_steps: no JSON to format); without it, `metadata_json` is the whole
  !> metadata (a JSON object with "steps_completed"). A store that is still open is aborted first.
  subroutine ctx_store_path(self, store, steps_completed, metadata_json, shard, stat)
    class(det_context), intent(inout) :: self
    type(det_store), intent(inout) :: store
    class(*), intent(in), optional :: steps_completed
    character(len=*), intent(in), optional :: metadata_json
    logical, intent(in), optional :: shard
    integer, intent(out), optional :: stat
    character(kind=c_char), allocatable, target :: b_extra(:)
    type(c_ptr) :: extra
    logical(c_bool) :: sh
    type(c_ptr) :: h
    integer(c_int32_t) :: st
    integer :: ignored
    if (c_associated(store%ptr)) call store%abort(ignored)
    sh = .false.
    if (present(shard)) sh = logical(shard, c_bool)
    h = c_null_ptr
    if (present(steps_completed)) then
      extra = c_null_ptr
      if (present(metadata_json)) then
        call cbuf(metadata_json, b_extra)
        extra = c_loc(b_extra)
      end if
      st = det_ckpt_store_path_begin_steps(self%ptr, to_i64(steps_completed), extra, sh, h)
    else if (present(metadata_json)) then
      st = det_ckpt_store_path_begin(self%ptr, cstr(metadata_json), sh, h)
    else
      st = det_ckpt_store_path_begin(self%ptr, cstr('{}'), sh, h)
    end if
    if (st == DET_OK) store%ptr = h
    call check(st, stat)
  end subroutine

  !> Begin `restore_path(storage_id)`. A restore that is still open is closed first.
  subroutine ctx_restore_path(self, restore, storage_id, download_mode, stat)
    class(det_context), intent(inout) :: self
    type(det_restore), intent(inout) :: restore
    character(len=*), intent(in) :: storage_id
    integer, intent(in), optional :: download_mode
    integer, intent(out), optional :: stat
    integer(c_int32_t) :: mode, st
    type(c_ptr) :: h
    integer :: ignored
    if (c_associated(restore%ptr)) call restore%close(ignored)
    mode = DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD
    if (present(download_mode)) mode = int(download_mode, c_int32_t)
    h = c_null_ptr
    st = det_ckpt_restore_path_begin(self%ptr, cstr(storage_id), mode, c_null_funptr, c_null_ptr, h)
    if (st == DET_OK) restore%ptr = h
    call check(st, stat)
  end subroutine

  !> `upload(dir, metadata)`: the new storage id goes to `storage_id` (len >= 36). `selector` is a
  !> `bind(c)` function `logical(c_bool) function f(path, userdata)` with two `type(c_ptr), value`
  !> arguments (read `path` with detcore_c_string).
  subroutine ctx_upload(self, dir, storage_id, steps_completed, metadata_json, shard, selector, userdata, stat)
    class(det_context), intent(inout) :: self
    character(len=*), intent(in) :: dir
    character(len=*), intent(out) :: storage_id
    class(*), intent(in), optional :: steps_completed
    character(len=*), intent(in), optional :: metadata_json
    logical, intent(in), optional :: shard
    type(c_funptr), intent(in), optional :: selector
    type(c_ptr), intent(in), optional :: userdata
    integer, intent(out), optional :: stat
    character(kind=c_char) :: id(DET_STORAGE_ID_LEN)
    character(len=:), allocatable :: meta
    logical(c_bool) :: sh
    type(c_funptr) :: sel
    type(c_ptr) :: ud
    integer(c_int32_t) :: st
    integer :: i
    if (present(metadata_json)) then
      meta = metadata_json
    else if (present(steps_completed)) then
      meta = '{"steps_completed": ' // i64_text(to_i64(steps_completed)) // '}'
    else
      meta = '{}'
    end if
    sh = .false.
    if (present(shard)) sh = logical(shard, c_bool)
    sel = c_null_funptr
    if (present(selector)) sel = selector
    ud = c_null_ptr
    if (present(userdata)) ud = userdata
    id = c_null_char
    storage_id = ''
    st = det_ckpt_upload(self%ptr, cstr(dir), cstr(meta), sh, sel, ud, id)
    if (st == DET_OK) then
      do i = 1, min(len(storage_id), DET_STORAGE_ID_LEN - 1)
        if (id(i) == c_null_char) exit
        storage_id(i:i) = id(i)
      end do
    end if
    call check(st, stat)
  end subroutine

  !> `download(storage_id, dir, download_mode, selector)`.
  subroutine ctx_download(self, storage_id, dir, download_mode, selector, userdata, stat)
    class(det_context), intent(inout) :: self
    character(len=*), intent(in) :: storage_id, dir
    integer, intent(in), optional :: download_mode
    type(c_funptr), intent(in), optional :: selector
    type(c_ptr), intent(in), optional :: userdata
    integer, intent(out), optional :: stat
    integer(c_int32_t) :: mode
    type(c_funptr) :: sel
    type(c_ptr) :: ud
    mode = DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD
    if (present(download_mode)) mode = int(download_mode, c_int32_t)
    sel = c_null_funptr
    if (present(selector)) sel = selector
    ud = c_null_ptr
    if (present(userdata)) ud = userdata
    call check(det_ckpt_download(self%ptr, cstr(storage_id), cstr(dir), mode, sel, ud), stat)
  end subroutine

  !> The checkpoint's metadata as JSON text.
  function ctx_get_metadata(self, storage_id, stat) result(s)
    class(det_context), intent(inout) :: self
    character(len=*), intent(in) :: storage_id
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    st = det_ckpt_get_metadata(self%ptr, cstr(storage_id), p)
    s = ''
    if (st == DET_OK) s = take_c_string(p)
    call check(st, stat)
  end function

  subroutine ctx_delete_checkpoint(self, storage_id, stat)
    class(det_context), intent(inout) :: self
    character(len=*), intent(in) :: storage_id
    integer, intent(out), optional :: stat
    call check(det_ckpt_delete(self%ptr, cstr(storage_id)), stat)
  end subroutine

  !> Wait for asynchronous checkpoint uploads.
  subroutine ctx_wait_checkpoints(self, stat)
    class(det_context), intent(inout) :: self
    integer, intent(out), optional :: stat
    call check(det_ckpt_wait(self%ptr), stat)
  end subroutine

  ! ---- det_store / det_restore ------------------------------------------------------------------------

  !> The folder to write the checkpoint's files into.
  function store_path_get(self, stat) result(s)
    class(det_store), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    st = det_ckpt_store_path(self%ptr, p)
    s = ''
    if (st == DET_OK) s = detcore_c_string(p)
    call check(st, stat)
  end function

  function store_storage_id(self, stat) result(s)
    class(det_store), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    st = det_ckpt_store_storage_id(self%ptr, p)
    s = ''
    if (st == DET_OK) s = detcore_c_string(p)
    call check(st, stat)
  end function

  !> Publish the checkpoint; its storage id goes to `storage_id` (len >= 36) if given. The scope
  !> is over afterwards, whatever the result. `upload_mode` (DET_UPLOAD_MODE_*; absent: as
  !> `async_checkpoints` at init) chooses `det_ckpt_store_path_end_mode`: with
  !> DET_UPLOAD_MODE_ASYNC the call returns once the files are handed off (`wait_checkpoints()`
  !> waits for them). An unknown mode is refused and leaves the scope open (commit it again or
  !> abort it).
  subroutine store_commit(self, storage_id, stat, upload_mode)
    class(det_store), intent(inout) :: self
    character(len=*), intent(out), optional :: storage_id
    integer, intent(out), optional :: stat
    integer, intent(in), optional :: upload_mode
    character(len=:), allocatable :: id, msg
    type(c_ptr) :: h, p
    integer(c_int32_t) :: st
    h = self%ptr
    id = ''
    p = c_null_ptr
    if (det_ckpt_store_storage_id(h, p) == DET_OK) id = detcore_c_string(p)  ! borrowed until _end
    if (present(storage_id)) storage_id = ''
    if (present(upload_mode)) then
      st = det_ckpt_store_path_end_mode(h, int(upload_mode, c_int32_t), c_null_ptr)
      if (st /= DET_OK) then
        msg = detcore_c_string(det_last_error_message())
        p = c_null_ptr
        if (det_ckpt_store_storage_id(h, p) /= DET_OK) self%ptr = c_null_ptr  ! else still open
        call fail(st, msg, stat)
        return
      end if
      self%ptr = c_null_ptr
    else
      self%ptr = c_null_ptr
      st = det_ckpt_store_path_end(h, c_null_ptr)
    end if
    if (present(storage_id) .and. st == DET_OK) storage_id = id
    call check(st, stat)
  end subroutine

  !> Discard the checkpoint (its folder is removed).
  subroutine store_abort(self, stat)
    class(det_store), intent(inout) :: self
    integer, intent(out), optional :: stat
    type(c_ptr) :: h
    h = self%ptr
    self%ptr = c_null_ptr
    call check(det_ckpt_store_path_abort(h), stat)
  end subroutine

  logical function store_is_open(self)
    class(det_store), intent(in) :: self
    store_is_open = c_associated(self%ptr)
  end function

  subroutine store_final(self)
    type(det_store), intent(inout) :: self
    integer(c_int32_t) :: st
    if (c_associated(self%ptr)) then
      st = det_ckpt_store_path_abort(self%ptr)  ! never publish an unfinished checkpoint
      self%ptr = c_null_ptr
    end if
  end subroutine

  function restore_path_get(self, stat) result(s)
    class(det_restore), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    st = det_ckpt_restore_path(self%ptr, p)
    s = ''
    if (st == DET_OK) s = detcore_c_string(p)
    call check(st, stat)
  end function

  !> The checkpoint restored: the one asked for, or after an off-cluster resume fallback the
  !> older checkpoint restored instead.
  function restore_storage_id_get(self, stat) result(s)
    class(det_restore), intent(in) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    st = det_ckpt_restore_storage_id(self%ptr, p)
    s = ''
    if (st == DET_OK) s = detcore_c_string(p)
    call check(st, stat)
  end function

  subroutine restore_close(self, stat)
    class(det_restore), intent(inout) :: self
    integer, intent(out), optional :: stat
    type(c_ptr) :: h
    h = self%ptr
    self%ptr = c_null_ptr
    call check(det_ckpt_restore_path_end(h), stat)
  end subroutine

  logical function restore_is_open(self)
    class(det_restore), intent(in) :: self
    restore_is_open = c_associated(self%ptr)
  end function

  subroutine restore_final(self)
    type(det_restore), intent(inout) :: self
    integer(c_int32_t) :: st
    if (c_associated(self%ptr)) then
      st = det_ckpt_restore_path_end(self%ptr)
      self%ptr = c_null_ptr
    end if
  end subroutine

  ! ---- det_context: preemption ------------------------------------------------------------------------

  !> True when the job should checkpoint and exit. Costs nanoseconds: call it every step.
  logical function ctx_should_preempt(self, auto_ack, stat)
    class(det_context), intent(inout) :: self
    logical, intent(in), optional :: auto_ack
    integer, intent(out), optional :: stat
    logical(c_bool) :: b, ack
    ack = .true.
    if (present(auto_ack)) ack = logical(auto_ack, c_bool)
    b = .false.
    call check(det_should_preempt_ex(self%ptr, ack, b), stat)
    ctx_should_preempt = b
  end function

  subroutine ctx_acknowledge_preemption(self, stat)
    class(det_context), intent(inout) :: self
    integer, intent(out), optional :: stat
    call check(det_preempt_acknowledge(self%ptr), stat)
  end subroutine

  !> Seconds until the job's end time; `known` is false when none is known.
  function ctx_seconds_remaining(self, known, stat) result(seconds)
    class(det_context), intent(inout) :: self
    logical, intent(out) :: known
    integer, intent(out), optional :: stat
    real(real64) :: seconds
    logical(c_bool) :: k
    real(c_double) :: s
    k = .false.
    s = 0
    call check(det_preempt_seconds_remaining(self%ptr, k, s), stat)
    known = k
    seconds = s
  end function

  ! ---- det_context: training --------------------------------------------------------------------------

  !> Scalar metrics `names(i) = values(i)` (typed fast path, no JSON).
  subroutine ctx_report_training_metrics(self, steps_completed, names, values, stat)
    class(det_context), intent(inout) :: self
    class(*), intent(in) :: steps_completed
    character(len=*), intent(in) :: names(:)
    real(real64), intent(in) :: values(:)
    integer, intent(out), optional :: stat
    call report_scalars(self, "training", steps_completed, names, values, stat)
  end subroutine

  subroutine ctx_report_validation_metrics(self, steps_completed, names, values, stat)
    class(det_context), intent(inout) :: self
    class(*), intent(in) :: steps_completed
    character(len=*), intent(in) :: names(:)
    real(real64), intent(in) :: values(:)
    integer, intent(out), optional :: stat
    call report_scalars(self, "validation", steps_completed, names, values, stat)
  end subroutine

  !> `report_metrics(group, steps_completed, metrics)` with scalar metrics.
  subroutine ctx_report_metrics(self, group, steps_completed, names, values, stat)
    class(det_context), intent(inout) :: self
    character(len=*), intent(in) :: group
    class(*), intent(in) :: steps_completed
    character(len=*), intent(in) :: names(:)
    real(real64), intent(in) :: values(:)
    integer, intent(out), optional :: stat
    call report_scalars(self, group, steps_completed, names, values, stat)
  end subroutine

  subroutine report_scalars(self, group, steps_completed, names, values, stat)
    class(det_context), intent(inout) :: self
    character(len=*), intent(in) :: group
    class(*), intent(in) :: steps_completed
    character(len=*), intent(in) :: names(:)
    real(real64), intent(in) :: values(:)
    integer, intent(out), optional :: stat
    character(kind=c_char), allocatable, target :: buf(:, :)
    type(c_ptr), allocatable :: ptrs(:)
    real(c_double), allocatable :: vals(:)
    integer :: i, j, n
    if (size(names) /= size(values)) then
      call fail(DET_ERR_INVALID_ARGUMENT, "report_metrics: names has " // i64_text(int(size(names), c_int64_t)) // &
           " entries but values has " // i64_text(int(size(values), c_int64_t)), stat)
      return
    end if
    n = size(names)
    allocate(buf(len(names) + 1, max(n, 1)), ptrs(max(n, 1)), vals(max(n, 1)))
    do i = 1, n
      do j = 1, len_trim(names(i))
        buf(j, i) = names(i)(j:j)
      end do
      buf(len_trim(names(i)) + 1, i) = c_null_char
      ptrs(i) = c_loc(buf(1, i))
      vals(i) = values(i)
    end do
    call check(det_train_report_scalars(self%ptr, cstr(group), to_i64(steps_completed), ptrs, vals, &
         int(n, c_size_t)), stat)
  end subroutine

  !> JSON forms: any JSON values (`batch_metrics_json`: a JSON array of objects).
  subroutine ctx_report_training_metrics_json(self, steps_completed, metrics_json, batch_metrics_json, stat)
    class(det_context), intent(inout) :: self
    class(*), intent(in) :: steps_completed
    character(len=*), intent(in) :: metrics_json
    character(len=*), intent(in), optional :: batch_metrics_json
    integer, intent(out), optional :: stat
    character(kind=c_char), allocatable, target :: batch(:)
    type(c_ptr) :: pb
    pb = c_null_ptr
    if (present(batch_metrics_json)) then
      call cbuf(batch_metrics_json, batch)
      pb = c_loc(batch)
    end if
    call check(det_train_report_training_metrics(self%ptr, to_i64(steps_completed), cstr(metrics_json), pb), stat)
  end subroutine

  subroutine ctx_report_validation_metrics_json(self, steps_completed, metrics_json, stat)
    class(det_context), intent(inout) :: self
    class(*), intent(in) :: steps_completed
    character(len=*), intent(in) :: metrics_json
    integer, intent(out), optional :: stat
    call check(det_train_report_validation_metrics(self%ptr, to_i64(steps_completed), cstr(metrics_json)), stat)
  end subroutine

  subroutine ctx_report_metrics_json(self, group, steps_completed, metrics_json, stat)
    class(det_context), intent(inout) :: self
    character(len=*), intent(in) :: group
    class(*), intent(in) :: steps_completed
    character(len=*), intent(in) :: metrics_json
    integer, intent(out), optional :: stat
    call check(det_train_report_metrics(self%ptr, cstr(group), to_i64(steps_completed), cstr(metrics_json)), stat)
  end subroutine

  subroutine ctx_set_status(self, status, stat)
    class(det_context), intent(inout) :: self
    character(len=*), intent(in) :: status
    integer, intent(out), optional :: stat
    call check(det_train_set_status(self%ptr, cstr(status)), stat)
  end subroutine

  !> Progress in [0, 1].
  subroutine ctx_report_progress(self, progress, stat)
    class(det_context), intent(inout) :: self
    real(real64), intent(in) :: progress
    integer, intent(out), optional :: stat
    call check(det_train_report_progress(self%ptr, real(progress, c_double)), stat)
  end subroutine

  subroutine ctx_report_early_exit(self, reason, stat)
    class(det_context), intent(inout) :: self
    integer, intent(in) :: reason
    integer, intent(out), optional :: stat
    call check(det_train_report_early_exit(self%ptr, int(reason, c_int32_t)), stat)
  end subroutine

  !> The experiment's best searcher metric; `found` is false when there is none (always off-cluster).
  function ctx_best_validation(self, found, stat) result(v)
    class(det_context), intent(inout) :: self
    logical, intent(out) :: found
    integer, intent(out), optional :: stat
    real(real64) :: v
    logical(c_bool) :: f
    real(c_double) :: x
    f = .false.
    x = 0
    call check(det_train_get_experiment_best_validation(self%ptr, f, x), stat)
    found = f
    v = x
  end function

  !> Merge a JSON object into the run's metadata; returns the result.
  function ctx_set_run_metadata(self, metadata_json, stat) result(s)
    class(det_context), intent(inout) :: self
    character(len=*), intent(in) :: metadata_json
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    st = det_train_set_run_metadata(self%ptr, cstr(metadata_json), p)
    s = ''
    if (st == DET_OK) s = take_c_string(p)
    call check(st, stat)
  end function

  function ctx_get_run_metadata(self, stat) result(s)
    class(det_context), intent(inout) :: self
    integer, intent(out), optional :: stat
    character(len=:), allocatable :: s
    type(c_ptr) :: p
    integer(c_int32_t) :: st
    p = c_null_ptr
    st = det_train_get_run_metadata(self%ptr, p)
    s = ''
    if (st == DET_OK) s = take_c_string(p)
    call check(st, stat)
  end function

  !> Wait until every report so far is delivered (at most `timeout_seconds`, default 60).
  subroutine ctx_flush(self, timeout_seconds, stat)
    class(det_context), intent(inout) :: self
    real(real64), intent(in), optional :: timeout_seconds
    integer, intent(out), optional :: stat
    real(c_double) :: t
    t = 60
    if (present(timeout_seconds)) t = timeout_seconds
    call check(det_train_flush(self%ptr, t), stat)
  end subroutine

  ! ---- det_context: searcher --------------------------------------------------------------------------

  !> The next searcher operation into `op` (`op%is_valid()` is false when there are no more).
  subroutine ctx_next_op(self, op, searcher_mode, stat)
    class(det_context), intent(inout) :: self
    type(det_searcher_op), intent(inout) :: op
    integer, intent(in), optional :: searcher_mode
    integer, intent(out), optional :: stat
    integer(c_int32_t) :: mode, st
    type(c_ptr) :: h
    call op%free()
    mode = DET_SEARCHER_MODE_WORKERS_ASK_CHIEF
    if (present(searcher_mode)) mode = int(searcher_mode, c_int32_t)
    h = c_null_ptr
    st = det_searcher_next_op(self%ptr, mode, h)
    if (st == DET_OK) op%ptr = h
    call check(st, stat)
  end subroutine

  !> One of DET_UNIT_* (DET_UNIT_NONE when the config names none).
  integer function ctx_configured_units(self, stat)
    class(det_context), intent(inout) :: self
    integer, intent(out), optional :: stat
    integer(c_int32_t) :: u
    u = DET_UNIT_NONE
    call check(det_searcher_get_configured_units(self%ptr, u), stat)
    ctx_configured_units = int(u)
  end function

  logical function op_is_valid(self)
    class(det_searcher_op), intent(in) :: self
    op_is_valid = c_associated(self%ptr)
  end function

  function op_length(self, stat) result(n)
    class(det_searcher_op), intent(in) :: self
    integer, intent(out), optional :: stat
    integer(int64) :: n
    integer(c_int64_t) :: v
    v = 0
    call check(det_searcher_op_length(self%ptr, v), stat)
    n = v
  end function

  subroutine op_report_progress(self, length, stat)
    class(det_searcher_op), intent(inout) :: self
    real(real64), intent(in) :: length
    integer, intent(out), optional :: stat
    call check(det_searcher_op_report_progress(self%ptr, real(length, c_double)), stat)
  end subroutine

  subroutine op_report_completed(self, searcher_metric, stat)
    class(det_searcher_op), intent(inout) :: self
    real(real64), intent(in) :: searcher_metric
    integer, intent(out), optional :: stat
    call check(det_searcher_op_report_completed(self%ptr, real(searcher_metric, c_double)), stat)
  end subroutine

  subroutine op_free(self)
    class(det_searcher_op), intent(inout) :: self
    integer(c_int32_t) :: st
    if (c_associated(self%ptr)) st = det_searcher_op_free(self%ptr)
    self%ptr = c_null_ptr
  end subroutine

  subroutine op_final(self)
    type(det_searcher_op), intent(inout) :: self
    call self%free()
  end subroutine

  ! ---- det_context: distributed -----------------------------------------------------------------------

  integer function ctx_rank(self, stat)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    integer(c_int32_t) :: v
    v = 0
    call check(det_dist_rank(self%ptr, v), stat)
    ctx_rank = int(v)
  end function

  integer function ctx_size(self, stat)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    integer(c_int32_t) :: v
    v = 0
    call check(det_dist_size(self%ptr, v), stat)
    ctx_size = int(v)
  end function

  integer function ctx_local_rank(self, stat)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    integer(c_int32_t) :: v
    v = 0
    call check(det_dist_local_rank(self%ptr, v), stat)
    ctx_local_rank = int(v)
  end function

  integer function ctx_local_size(self, stat)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    integer(c_int32_t) :: v
    v = 0
    call check(det_dist_local_size(self%ptr, v), stat)
    ctx_local_size = int(v)
  end function

  integer function ctx_cross_rank(self, stat)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    integer(c_int32_t) :: v
    v = 0
    call check(det_dist_cross_rank(self%ptr, v), stat)
    ctx_cross_rank = int(v)
  end function

  integer function ctx_cross_size(self, stat)
    class(det_context), intent(in) :: self
    integer, intent(out), optional :: stat
    integer(c_int32_t) :: v
    v = 0
    call check(det_dist_cross_size(self%ptr, v), stat)
    ctx_cross_size = int(v)
  end function

  subroutine ctx_barrier(self, stat)
    class(det_context), intent(inout) :: self
    integer, intent(out), optional :: stat
    call check(det_dist_barrier(self%ptr), stat)
  end subroutine

  !> Run collective `kind` (1 allgather, 2 broadcast) on `nbytes` at `data`; copy rank r's bytes
  !> to out + r*nbytes. Every rank must pass the same nbytes.
  subroutine bytes_collective(self, kind, data, nbytes, out, nranks_out, stat)
    class(det_context), intent(inout) :: self
    integer, intent(in) :: kind
    type(c_ptr), intent(in) :: data
    integer(c_size_t), intent(in) :: nbytes
    type(c_ptr), intent(in) :: out
    integer, intent(in) :: nranks_out
    integer, intent(out), optional :: stat
    type(c_ptr) :: list, p
    integer(c_size_t) :: n, len, r
    integer(c_int32_t) :: st
    integer(c_int8_t), pointer :: src(:), dst(:)
    list = c_null_ptr
    if (kind == 1) then
      st = det_dist_allgather(self%ptr, data, nbytes, list)
    else
      st = det_dist_broadcast(self%ptr, data, nbytes, list)
    end if
    if (st /= DET_OK) then
      call check(st, stat)
      return
    end if
    st = det_bytes_list_len(list, n)
    if (st == DET_OK .and. int(n) /= nranks_out) then
      st = det_bytes_list_free(list)
      call fail(DET_ERR_DISTRIBUTED, "collective: got " // i64_text(int(n, c_int64_t)) // " buffers, expected " // &
           i64_text(int(nranks_out, c_int64_t)), stat)
      return
    end if
    call c_f_pointer(out, dst, [nbytes * n])
    do r = 0, n - 1
      if (st /= DET_OK) exit
      st = det_bytes_list_get(list, r, p, len)
      if (st /= DET_OK) exit
      if (len /= nbytes) then
        st = det_bytes_list_free(list)
        call fail(DET_ERR_DISTRIBUTED, "collective: rank " // i64_text(int(r, c_int64_t)) // " sent " // &
             i64_text(int(len, c_int64_t)) // " bytes, expected " // i64_text(int(nbytes, c_int64_t)), stat)
        return
      end if
      if (len > 0) then
        call c_f_pointer(p, src, [len])
        dst(r * nbytes + 1:(r + 1) * nbytes) = src
      end if
    end do
    if (st /= DET_OK) then
      call check(st, stat)
      st = det_bytes_list_free(list)
      return
    end if
    call check(det_bytes_list_free(list), stat)
  end subroutine

  !> all(:, r+1) = rank r's x, for every rank (all must have size(x) rows and size() columns).
  subroutine ctx_allgather_real64(self, x, all, stat)
    class(det_context), intent(inout) :: self
    real(real64), intent(in), target, contiguous :: x(:)
    real(real64), intent(inout), target, contiguous :: all(:, :)
    integer, intent(out), optional :: stat
    integer :: nranks
    nranks = self%size()
    if (size(all, 1) /= size(x) .or. size(all, 2) /= nranks) then
      call fail(DET_ERR_INVALID_ARGUMENT, "allgather_real64: all must be size(x) x size()", stat)
      return
    end if
    call bytes_collective(self, 1, c_loc(x), int(size(x) * 8, c_size_t), c_loc(all), size(all, 2), stat)
  end subroutine

  subroutine ctx_allgather_int64(self, x, all, stat)
    class(det_context), intent(inout) :: self
    integer(int64), intent(in), target, contiguous :: x(:)
    integer(int64), intent(inout), target, contiguous :: all(:, :)
    integer, intent(out), optional :: stat
    integer :: nranks
    nranks = self%size()
    if (size(all, 1) /= size(x) .or. size(all, 2) /= nranks) then
      call fail(DET_ERR_INVALID_ARGUMENT, "allgather_int64: all must be size(x) x size()", stat)
      return
    end if
    call bytes_collective(self, 1, c_loc(x), int(size(x) * 8, c_size_t), c_loc(all), size(all, 2), stat)
  end subroutine

  !> x = the chief's x, on every rank.
  subroutine ctx_broadcast_real64(self, x, stat)
    class(det_context), intent(inout) :: self
    real(real64), intent(inout), target, contiguous :: x(:)
    integer, intent(out), optional :: stat
    real(real64), allocatable, target :: tmp(:)
    allocate(tmp(size(x)))
    tmp = x
    call bytes_collective(self, 2, c_loc(tmp), int(size(x) * 8, c_size_t), c_loc(x), 1, stat)
  end subroutine

  subroutine ctx_broadcast_int64(self, x, stat)
    class(det_context), intent(inout) :: self
    integer(int64), intent(inout), target, contiguous :: x(:)
    integer, intent(out), optional :: stat
    integer(int64), allocatable, target :: tmp(:)
    allocate(tmp(size(x)))
    tmp = x
    call bytes_collective(self, 2, c_loc(tmp), int(size(x) * 8, c_size_t), c_loc(x), 1, stat)
  end subroutine

end module detcore
