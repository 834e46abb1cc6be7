!> Tests of the Fortran module `detcore` (bindings/fortran/detcore.f90): the stat convention and
!> error messages, string conversion both ways, the det_context / det_store / det_restore /
!> det_searcher_op types, real(8) metrics, hyperparameters, collectives with one rank, preemption.
!> Run by ctest as fortran_test_fortran (TMPDIR points into the build folder).
module test_support
  use, intrinsic :: iso_c_binding
  use detcore
  implicit none
  integer :: failures = 0
  character(len=:), allocatable :: current
  integer :: selector_calls = 0

  interface
    function c_raise(sig) bind(c, name="raise")
      import :: c_int
      integer(c_int), value :: sig
      integer(c_int) :: c_raise
    end function
  end interface

contains

  subroutine expect(cond, what)
    logical, intent(in) :: cond
    character(len=*), intent(in) :: what
    if (.not. cond) then
      write(*, '(a)') "FAIL " // current // ": " // what
      failures = failures + 1
    end if
  end subroutine

  !> `st` must be `want` and the last error must contain `needle`.
  subroutine expect_err(st, want, needle, what)
    integer, intent(in) :: st, want
    character(len=*), intent(in) :: needle, what
    character(len=:), allocatable :: msg
    msg = detcore_last_error()
    if (st /= want .or. index(msg, needle) == 0) then
      write(*, '(a,a,a,a,a,a,a,a)') "FAIL ", current, ": ", what, ": got ", detcore_status_name(st), " / ", msg
      write(*, '(a,a,a,a)') "     expected ", detcore_status_name(want), " with ", needle
      failures = failures + 1
    end if
  end subroutine

  function tmpdir(tag) result(d)
    character(len=*), intent(in) :: tag
    character(len=:), allocatable :: d
    character(len=512) :: base
    integer :: n, clock
    call get_environment_variable("TMPDIR", base, n)
    if (n == 0) base = "/tmp"
    call system_clock(clock)
    write(base, '(a,a,a,a,i0,a,i0)') trim(base), "/detcore-ftest-", tag, "-", clock, "-", int(rand_id())
    d = trim(base)
    call execute_command_line("mkdir -p " // d)
  end function

  real function rand_id()
    call random_number(rand_id)
    rand_id = rand_id * 1e6
  end function

  subroutine open_ctx(ctx, dir, run, stat)
    type(det_context), intent(inout) :: ctx
    character(len=*), intent(in) :: dir, run
    integer, intent(out), optional :: stat
    call ctx%init(checkpoint_storage=dir // "/ckpts", run_dir=dir // "/run", run_name=run, &
         cluster_info_dir="/nonexistent/detcore-test-info", stat=stat)
  end subroutine

  !> A selector: keep paths under "keep/".
  function keep_only(path, userdata) bind(c) result(keep)
    type(c_ptr), value :: path, userdata
    logical(c_bool) :: keep
    character(len=:), allocatable :: p
    p = detcore_c_string(path)
    selector_calls = selector_calls + 1
    keep = logical(index(p, "keep") == 1, c_bool)
    if (c_associated(userdata)) continue
  end function

  !> A selector for TensorBoard uploads: leave out *.log files.
  function skip_logs(path, userdata) bind(c) result(keep)
    type(c_ptr), value :: path, userdata
    logical(c_bool) :: keep
    keep = logical(index(detcore_c_string(path), ".log") == 0, c_bool)
    if (c_associated(userdata)) continue
  end function

  !> A name mangler: store each file under rank<r>/<name>.
  function rank_mangler(path, rank, name, name_size, userdata) bind(c) result(ok)
    type(c_ptr), value :: path, name, userdata
    integer(c_int32_t), value :: rank
    integer(c_size_t), value :: name_size
    logical(c_bool) :: ok
    character(len=24) :: prefix
    write(prefix, '(a,i0,a)') "rank", rank, "/"
    ok = logical(detcore_set_c_string(name, name_size, trim(prefix) // detcore_c_string(path)), c_bool)
    if (c_associated(userdata)) continue
  end function

  !> A mangler whose name does not fit: detcore_set_c_string refuses it, the upload is abandoned.
  function long_mangler(path, rank, name, name_size, userdata) bind(c) result(ok)
    type(c_ptr), value :: path, name, userdata
    integer(c_int32_t), value :: rank
    integer(c_size_t), value :: name_size
    logical(c_bool) :: ok
    ok = logical(detcore_set_c_string(name, name_size, repeat("x", DET_TB_NAME_MAX)), c_bool)
    if (c_associated(path) .and. c_associated(userdata) .and. rank < 0) continue
  end function

  !> Does a file matching `pattern` (a shell glob) contain `text`?
  logical function file_contains(pattern, text)
    character(len=*), intent(in) :: pattern, text
    integer :: es
    call execute_command_line("grep -qaF '" // text // "' " // pattern, exitstat=es)
    file_contains = es == 0
  end function

  function read_text(path) result(s)
    character(len=*), intent(in) :: path
    character(len=:), allocatable :: s
    integer :: unit, n, ios
    open(newunit=unit, file=path, access="stream", form="unformatted", status="old", action="read", iostat=ios)
    if (ios /= 0) then
      s = "<missing>"
      return
    end if
    inquire(unit=unit, size=n)
    allocate(character(len=n) :: s)
    if (n > 0) read(unit) s
    close(unit)
  end function

  subroutine write_text(path, s)
    character(len=*), intent(in) :: path, s
    integer :: unit
    open(newunit=unit, file=path, access="stream", form="unformatted", status="replace", action="write")
    write(unit) s
    close(unit)
  end subroutine

  logical function exists(path)
    character(len=*), intent(in) :: path
    inquire(file=path, exist=exists)
  end function
end module

program test_fortran
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: int32, int64, real64
  use detcore
  use test_support
  implicit none

  call detcore_set_log_level(DET_LOG_LEVEL_WARNING)
  call test_structs_and_versions()
  call test_errors_and_stat()
  call test_checkpoints()
  call test_metrics_and_info()
  call test_searcher()
  call test_distributed()
  call test_preemption()
  call test_cluster_info_and_alert()
  call test_tensorboard_writer()
  call test_tensorboard_upload()
  call test_profiler()
  call test_upload_modes()
  if (failures > 0) then
    write(*, '(i0,a)') failures, " check(s) failed"
    error stop 1
  end if
  write(*, '(a)') "all Fortran tests passed"

contains

  subroutine test_structs_and_versions()
    type(det_init_options) :: o
    type(det_distributed_config) :: d
    current = "structs_and_versions"
    ! The bind(c) types have the C layout: the library accepts their size and fills them.
    call expect(det_init_options_default(o, c_sizeof(o)) == DET_OK, "det_init_options_default")
    call expect(o%struct_size == c_sizeof(o), "struct_size")
    call expect(o%halt_margin_seconds < 0 .and. .not. o%disable_signal_handlers, "option defaults")
    d = detcore_distributed_default()
    call expect(d%rank == 0 .and. d%size == 1 .and. d%local_size == 1 .and. d%cross_size == 1, "distributed default")
    call expect(det_init_options_default(o, 8_c_size_t) == DET_ERR_INVALID_ARGUMENT, "too small struct_size")
    call expect(len(detcore_version()) >= 5, "version " // detcore_version())
    call expect(det_version_number() > 0, "version number")
    call expect(detcore_status_name(DET_ERR_NOT_FOUND) == "DET_ERR_NOT_FOUND", "status name")
    call expect(detcore_status_name(12345) == "DET_UNKNOWN_STATUS", "unknown status name")
    write(*, '(a)') "ok   " // current
  end subroutine

  subroutine test_errors_and_stat()
    type(det_context) :: ctx
    type(det_store) :: store
    integer :: st
    character(len=:), allocatable :: dir
    current = "errors_and_stat"
    dir = tmpdir("err")
    call ctx%init(checkpoint_storage="ftp://x", stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, 'det_core_init: checkpoint_storage: unknown scheme "ftp"', "bad storage")
    call expect(.not. ctx%is_open(), "not opened after a failure")
    call ctx%init(checkpoint_storage=dir // "/c", hparams_json="[1, 2]", stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "hparams_json: expected a JSON object, got array", "bad hparams")
    call ctx%init(checkpoint_storage=dir // "/c", preempt_mode=7, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "preempt_mode: unknown value 7", "bad enum")
    call ctx%init(checkpoint_storage=dir // "/c", preempt_signals=[9], stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "SIGKILL cannot be caught", "SIGKILL")

    ! Trailing blanks of Fortran strings are removed: a padded run name works.
    block
      character(len=40) :: padded
      padded = "padded"
      call open_ctx(ctx, dir, padded, st)
      call expect(st == DET_OK, "open with a padded name")
      call expect(ctx%run_name() == "padded", "run name '" // ctx%run_name() // "'")
    end block
    call ctx%init(stat=st)
    call expect_err(st, DET_ERR_STATE, "already open", "init twice")

    call ctx%store_path(store, metadata_json='{"steps_completed": 1', stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "metadata_json: malformed JSON", "malformed metadata")
    call ctx%store_path(store, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "steps_completed", "metadata without steps_completed")
    call expect(.not. store%is_open(), "no store after a failure")
    call ctx%report_metrics("a.b", 1, [character(len=4) :: "x"], [1d0], stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "group", "group with a dot")
    call ctx%report_training_metrics(1, [character(len=4) :: "x", "y"], [1d0], stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "names has 2 entries but values has 1", "size mismatch")
    call ctx%report_training_metrics_json(1, '{"a": 1,}', stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "metrics_json: malformed JSON", "malformed metrics")
    call ctx%report_progress(2d0, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "progress", "progress > 1")
    block
      real(real64) :: v
      v = ctx%hparam_real("missing", stat=st)
      call expect_err(st, DET_ERR_NOT_FOUND, 'hparam "missing" not found', "missing hparam")
    end block
    block
      type(det_restore) :: rp
      call ctx%restore_path(rp, "00000000-0000-0000-0000-000000000000", stat=st)
      call expect_err(st, DET_ERR_NOT_FOUND, "det_ckpt_restore_path_begin", "unknown checkpoint")
      call ctx%restore_path(rp, "x", download_mode=9, stat=st)
      call expect_err(st, DET_ERR_INVALID_ARGUMENT, "download_mode: unknown value 9", "bad download mode")
    end block

    ! After close: every call reports DET_ERR_STATE (the handle is kept by detcore, not freed).
    block
      type(det_context) :: copy
      logical :: preempted
      copy%ptr = ctx%ptr
      call ctx%close(stat=st)
      call expect(st == DET_OK, "close")
      call expect(.not. ctx%is_open(), "closed")
      preempted = copy%should_preempt(stat=st)
      call expect(.not. preempted, "use after close gives false")
      call expect_err(st, DET_ERR_STATE, "closed by det_core_close", "use after close")
      call copy%close(stat=st)
      call expect_err(st, DET_ERR_STATE, "already closed", "close twice")
    end block
    call ctx%close(stat=st)
    call expect(st == DET_OK, "close(NULL) is a no-op")
    write(*, '(a)') "ok   " // current
  end subroutine

  subroutine test_checkpoints()
    type(det_context) :: ctx
    type(det_store) :: store
    type(det_restore) :: rp
    character(len=:), allocatable :: dir, path, half, meta
    character(len=36) :: id1, id2, id3
    type(c_funptr), save :: sel
    integer :: st
    current = "checkpoints"
    dir = tmpdir("ckpt")
    call open_ctx(ctx, dir, "ckpt")
    call expect(len(ctx%latest_checkpoint()) == 0, "fresh run has no checkpoint")

    ! store → write → commit
    call ctx%store_path(store, steps_completed=5_int64)
    call expect(store%is_open(), "store open")
    path = store%path()
    call expect(len(store%storage_id()) == 36, "storage id")
    call expect(index(path, store%storage_id()) > 0, "path holds the id")
    call write_text(path // "/field.bin", "field-5")
    call store%commit(id1)
    call expect(.not. store%is_open(), "store closed by commit")
    call expect(read_text(dir // "/ckpts/" // id1 // "/field.bin") == "field-5", "published file")
    call expect(index(read_text(dir // "/ckpts/" // id1 // "/metadata.json"), '"steps_completed": 5') > 0, &
         "metadata.json")
    ! steps_completed plus other metadata: det_ckpt_store_path_begin_steps
    call ctx%store_path(store, steps_completed=4, metadata_json='{"reason": "typed", "loss": nan}')
    call store%commit(id2)
    call expect(ctx%get_metadata(id2) == '{"steps_completed": 4, "reason": "typed", "loss": "NaN"}', &
         "typed begin metadata: " // ctx%get_metadata(id2))
    call ctx%store_path(store, steps_completed=4, metadata_json='{"steps_completed": 4}', stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, 'extra_metadata_json holds "steps_completed"', "typed begin twice")
    call ctx%store_path(store, steps_completed=-1, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "steps_completed: must be between 0 and", "negative steps")
    call store%commit(stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "store is NULL", "commit twice")

    ! abort: nothing published, folder removed
    call ctx%store_path(store, steps_completed=6)
    half = store%path()
    call write_text(half // "/field.bin", "half")
    call store%abort()
    call expect(.not. exists(half // "/field.bin"), "aborted folder removed")

    ! a scope that goes out of scope unfinished is aborted by the finalizer, never published
    call unfinished_store(ctx, half)
    call expect(len(half) > 0, "unfinished store had a path")
    call expect(.not. exists(half // "/field.bin"), "unfinished store discarded at finalization")

    ! metadata, restore, upload/download with a selector, delete
    meta = ctx%get_metadata(id1)
    call expect(index(meta, '"steps_completed": 5') > 0, "get_metadata: " // meta)
    call ctx%restore_path(rp, id1)
    call expect(read_text(rp%path() // "/field.bin") == "field-5", "restore_path")
    call expect(rp%storage_id() == id1, "restore storage_id")
    call rp%close()
    call expect(.not. rp%is_open(), "restore closed")

    call execute_command_line("mkdir -p " // dir // "/src/keep")
    call write_text(dir // "/src/keep/a.txt", "a")
    call write_text(dir // "/src/drop.txt", "d")
    selector_calls = 0
    sel = c_funloc(keep_only)
    call ctx%upload(dir // "/src", id2, metadata_json='{"steps_completed": 7, "by": "upload"}', selector=sel)
    call expect(selector_calls > 0, "selector called")
    call expect(exists(dir // "/ckpts/" // trim(id2) // "/keep/a.txt"), "selected file uploaded")
    call expect(.not. exists(dir // "/ckpts/" // trim(id2) // "/drop.txt"), "unselected file left out")
    call ctx%download(id2, dir // "/dl", download_mode=DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD)
    call expect(read_text(dir // "/dl/keep/a.txt") == "a", "download")
    call ctx%upload(dir // "/src", id3, steps_completed=8)
    call ctx%delete_checkpoint(id3)
    call expect(.not. exists(dir // "/ckpts/" // trim(id3) // "/drop.txt"), "deleted")
    call ctx%wait_checkpoints()
    call ctx%close()

    ! a new context of the same run resumes from the latest published checkpoint
    call open_ctx(ctx, dir, "ckpt")
    call expect(ctx%latest_checkpoint() == id2, "latest checkpoint " // ctx%latest_checkpoint())
    call expect(ctx%steps_completed() == 7, "steps_completed")
    call ctx%close()
    write(*, '(a)') "ok   " // current
  end subroutine

  subroutine unfinished_store(ctx, path)
    type(det_context), intent(inout) :: ctx
    character(len=:), allocatable, intent(out) :: path
    type(det_store) :: store
    call ctx%store_path(store, steps_completed=9)
    path = store%path()
    call write_text(path // "/field.bin", "half")
  end subroutine

  subroutine test_metrics_and_info()
    type(det_context) :: ctx
    character(len=:), allocatable :: dir, lines, md
    logical :: found
    real(real64) :: v
    integer :: st
    current = "metrics_and_info"
    dir = tmpdir("metrics")
    call ctx%init(checkpoint_storage=dir // "/ckpts", run_dir=dir // "/run", run_name="metrics", &
         cluster_info_dir="/nonexistent", &
         hparams_json='{"lr": 0.5, "n": 4, "name": "heat", "opt": {"m": 0.9}}')
    call expect(.not. ctx%on_cluster(), "off-cluster")
    call expect(ctx%hparam_real("lr") == 0.5d0, "hparam_real")
    call expect(ctx%hparam_int("n") == 4, "hparam_int")
    call expect(ctx%hparam_str("name") == "heat", "hparam_str")
    call expect(ctx%hparam_real("opt.m") == 0.9d0, "dotted hparam")
    call expect(ctx%hparam_int("missing", default=7) == 7, "int default")
    call expect(ctx%hparam_real("missing", default=1.5d0) == 1.5d0, "real default")
    call expect(ctx%hparam_str("missing", default="dflt") == "dflt", "str default")
    v = real(ctx%hparam_int("lr", stat=st), real64)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "not an integer", "hparam_int of a float")
    ! a default replaces an absent value only, never one of the wrong type
    v = real(ctx%hparam_int("lr", default=3, stat=st), real64)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "not an integer", "hparam_int default of a float")
    v = ctx%hparam_real("name", default=1d0, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "not a number", "hparam_real default of a string")
    call expect(ctx%hparam_str("n", default="x", stat=st) == "", "hparam_str default of a number")
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "not a string", "hparam_str default of a number")
    call expect(index(ctx%hparams_json(), '"name": "heat"') > 0, "hparams_json")
    call expect(ctx%run_dir() == dir // "/run", "run_dir " // ctx%run_dir())

    call ctx%report_training_metrics(10, [character(len=12) :: "residual", "l2"], [0.5d0, 0.25d0])
    call ctx%report_training_metrics(20_int64, [character(len=12) :: "residual"], [0.125d0])
    call ctx%report_validation_metrics(20, [character(len=12) :: "max_error"], [1d-3])
    call ctx%report_metrics("solver", 20, [character(len=12) :: "cfl"], [0.2d0])
    call ctx%report_training_metrics_json(30, '{"residual": 0.1, "phase": "b"}', '[{"residual": 0.1}]')
    call ctx%report_validation_metrics_json(30, '{"max_error": 0.01}')
    call ctx%report_metrics_json("solver", 30, '{"cfl": 0.2}')
    call ctx%set_status("solving")
    call ctx%report_progress(0.5d0)
    v = ctx%best_validation(found)
    call expect(.not. found, "no best validation off-cluster")
    md = ctx%set_run_metadata('{"a": 1}')
    call expect(index(md, '"a": 1') > 0, "set_run_metadata")
    call expect(ctx%get_run_metadata() == md, "get_run_metadata")
    call ctx%flush(30d0)
    lines = read_text(dir // "/run/metrics.jsonl")
    call expect(index(lines, '"steps_completed": 10') > 0, "step 10 in metrics.jsonl")
    call expect(index(lines, '"metrics": {"residual": 0.5, "l2": 0.25}') > 0, "typed metrics")
    call expect(index(lines, '"metrics": {"residual": 0.125}') > 0, "int64 steps")
    call expect(index(lines, '"group": "validation"') > 0, "validation group")
    call expect(index(lines, '"group": "solver"') > 0, "custom group")
    call expect(index(lines, '"phase": "b"') > 0, "json metrics")
    call ctx%close()
    write(*, '(a)') "ok   " // current
  end subroutine

  subroutine test_searcher()
    type(det_context) :: ctx
    type(det_searcher_op) :: op
    integer :: st, n
    current = "searcher"
    call ctx%init(checkpoint_storage=tmpdir("searcher") // "/c", run_name="searcher", &
         cluster_info_dir="/nonexistent", searcher_max_length=25)
    call expect(ctx%configured_units() == DET_UNIT_EPOCHS, "units")
    n = 0
    do
      call ctx%next_op(op)
      if (.not. op%is_valid()) exit
      n = n + 1
      call expect(op%length() == 25, "op length")
      call op%report_progress(10d0)
      call op%report_completed(0.5d0)
      call op%report_completed(0.5d0, stat=st)
      call expect_err(st, DET_ERR_STATE, "once", "completed twice")
    end do
    call expect(n == 1, "one operation")
    call ctx%close()

    call ctx%init(checkpoint_storage=tmpdir("searcher2") // "/c", run_name="searcher2", cluster_info_dir="/nonexistent")
    call ctx%next_op(op)
    call expect(op%is_valid(), "an op")
    call ctx%next_op(op, stat=st)
    call expect_err(st, DET_ERR_STATE, "report_completed", "next op before completing")
    call ctx%close()
    write(*, '(a)') "ok   " // current
  end subroutine

  subroutine test_distributed()
    type(det_context) :: ctx
    type(det_distributed_config) :: cfg
    real(real64) :: x(3), all(3, 1)
    integer(int64) :: k(2), kall(2, 1)
    real(real64) :: wrong(2, 2)
    integer :: st
    current = "distributed"
    call ctx%init(checkpoint_storage=tmpdir("dist") // "/c", run_name="dist", cluster_info_dir="/nonexistent", &
         job_id=achar(10), stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "must be 1 to 256 bytes of printable text", "bad job_id")
    call ctx%init(checkpoint_storage=tmpdir("dist") // "/c", run_name="dist", cluster_info_dir="/nonexistent", &
         job_id="fortran-job", slurm_requeue=.false.)
    call expect(ctx%rank() == 0 .and. ctx%size() == 1 .and. ctx%local_rank() == 0 .and. ctx%local_size() == 1 &
         .and. ctx%cross_rank() == 0 .and. ctx%cross_size() == 1, "ranks")
    x = [1d0, 2d0, 3d0]
    call ctx%allgather_real64(x, all)
    call expect(all(1, 1) == 1d0 .and. all(3, 1) == 3d0, "allgather_real64")
    k = [7_int64, -8_int64]
    call ctx%allgather_int64(k, kall)
    call expect(kall(2, 1) == -8, "allgather_int64")
    call ctx%broadcast_real64(x)
    call expect(x(2) == 2d0, "broadcast_real64")
    call ctx%broadcast_int64(k)
    call expect(k(1) == 7, "broadcast_int64")
    call ctx%allgather_real64(x, wrong, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "all must be size(x) x size()", "allgather shape")
    call ctx%barrier()
    call ctx%close()

    ! launcher environments
    cfg = detcore_distributed_default()
    call expect(setenv("SLURM_PROCID", "1") == 0, "setenv")
    call expect(setenv("SLURM_NTASKS", "2") == 0, "setenv")
    call expect(setenv("SLURM_LOCALID", "1") == 0, "setenv")
    call expect(setenv("SLURM_NODEID", "0") == 0, "setenv")
    call expect(setenv("SLURM_NNODES", "1") == 0, "setenv")
    call expect(setenv("SLURM_JOB_ID", "81") == 0, "setenv")
    call expect(setenv("SLURM_STEP_ID", "0") == 0, "setenv")
    call detcore_distributed_from_env(cfg, DET_LAUNCHER_SLURM)
    call expect(cfg%rank == 1 .and. cfg%size == 2 .and. cfg%local_size == 2, "slurm ranks")
    call expect(c_associated(cfg%job_id), "slurm job identity")
    call expect(unsetenv("SLURM_STEP_ID") == 0, "unsetenv")
    call detcore_distributed_from_env(cfg, DET_LAUNCHER_SLURM, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "no SLURM_STEP_ID", "batch script of two tasks")
    call expect(setenv("SLURM_STEP_ID", "0") == 0, "setenv")
    call expect(setenv("SLURM_PROCID", "7") == 0, "setenv")
    call detcore_distributed_from_env(cfg, DET_LAUNCHER_SLURM, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "rank 7 must be less than size 2", "bad slurm rank")
    call detcore_distributed_from_env(cfg, 99, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "launcher: unknown value 99", "bad launcher")
    call expect(unsetenv("SLURM_JOB_ID") == 0, "unsetenv")
    call expect(unsetenv("SLURM_STEP_ID") == 0, "unsetenv")
    write(*, '(a)') "ok   " // current
  end subroutine

  subroutine test_cluster_info_and_alert()
    type(det_context) :: ctx, copy
    character(len=:), allocatable :: dir
    integer(int64) :: n
    character(len=:), allocatable :: s
    type(det_distributed_config) :: cfg
    integer :: st, r
    current = "cluster_info_and_alert"
    dir = tmpdir("oninfo")
    call open_ctx(ctx, dir, "oninfo")
    ! Off-cluster: detcore answers DET_ERR_UNSUPPORTED; `default` turns that into a value.
    n = ctx%trial_id(stat=st)
    call expect_err(st, DET_ERR_UNSUPPORTED, "the trial id is only known on-cluster", "trial_id off-cluster")
    call expect(n == 0, "trial_id is 0 on failure")
    call expect(ctx%trial_id(default=-1) == -1, "trial_id default")
    call expect(ctx%experiment_id(default=-2_int64) == -2, "experiment_id default")
    call expect(ctx%trial_seed(default=7) == 7, "trial_seed default")
    call expect(ctx%trial_run_id(default=0) == 0, "trial_run_id default")
    n = ctx%trial_seed(stat=st)
    call expect_err(st, DET_ERR_UNSUPPORTED, "only known on-cluster", "trial_seed off-cluster")
    s = ctx%cluster_id(stat=st)
    call expect_err(st, DET_ERR_UNSUPPORTED, "the cluster id is only known on-cluster", "cluster_id off-cluster")
    call expect(s == "", "cluster_id empty on failure")
    call expect(ctx%task_type(default="local") == "local", "task_type default")
    call expect(ctx%task_id(default="") == "", "task_id default")
    call expect(ctx%allocation_id(default="a") == "a", "allocation_id default")
    call expect(ctx%agent_id(default="b") == "b", "agent_id default")
    call expect(ctx%master_url(default="c") == "c", "master_url default")
    call expect(ctx%experiment_config_json(default="{}") == "{}", "experiment_config_json default")
    call expect(ctx%user_data_json(default="{}") == "{}", "user_data_json default")
    s = ctx%master_url(stat=st)
    call expect_err(st, DET_ERR_UNSUPPORTED, "master URL is only known on-cluster", "master_url off-cluster")
    r = ctx%container_rank(stat=st)
    call expect_err(st, DET_ERR_UNSUPPORTED, "only known on-cluster", "container_rank off-cluster")
    call expect(ctx%container_rank(default=0) == 0, "container_rank default")
    ! The lists are empty off-cluster, without an error.
    call expect(ctx%container_count(stat=st) == 0 .and. st == DET_OK, "no containers")
    call expect(ctx%gpu_uuid_count() == 0, "no GPU UUIDs")
    s = ctx%container_addr(0, stat=st)
    call expect_err(st, DET_ERR_UNSUPPORTED, "only known on-cluster", "container_addr off-cluster")
    s = ctx%container_addr(-1, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "index -1 is negative", "negative container index")
    s = ctx%gpu_uuid(0, stat=st)
    call expect_err(st, DET_ERR_UNSUPPORTED, "only known on-cluster", "gpu_uuid off-cluster")
    call expect(ctx%slot_id_count(stat=st) == 0 .and. st == DET_OK, "no slot ids")
    r = ctx%slot_id(0, stat=st)
    call expect_err(st, DET_ERR_UNSUPPORTED, "only known on-cluster", "slot_id off-cluster")
    r = ctx%container_slot_count(0, stat=st)
    call expect_err(st, DET_ERR_UNSUPPORTED, "only known on-cluster", "container_slot_count off-cluster")
    r = ctx%slot_id(-2, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "index -2 is negative", "negative slot index")

    ! Alerts are logged off-cluster; a bad level is refused.
    call ctx%alert("title", "description")
    call ctx%alert()
    call ctx%alert(description="only a description", level=DET_ALERT_LEVEL_DEBUG)
    call ctx%alert("t", level=DET_ALERT_LEVEL_WARN, stat=st)
    call expect(st == DET_OK, "alert warn")
    call ctx%alert("t", level=DET_ALERT_LEVEL_ERROR)
    call ctx%alert("t", level=9, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "level: unknown value 9", "bad alert level")

    ! The trial's flags, the experimental reports and get_cluster_info off-cluster.
    call expect(.not. ctx%trial_debug(default=.false.), "trial_debug default")
    call expect(ctx%trial_debug(stat=st) .eqv. .false., "trial_debug is false on failure")
    call expect_err(st, DET_ERR_UNSUPPORTED, "only known on-cluster", "trial_debug off-cluster")
    call expect(ctx%inter_node_network_interface(default="none") == "none", "inter_node_network_interface default")
    call ctx%report_task_using_checkpoint("6f1c0f43-5d6c-4c79-9d5e-1f8f3f8a9b10", stat=st)
    call expect(st == DET_OK, "report_task_using_checkpoint off-cluster is logged")
    call ctx%report_task_using_model_version("6f1c0f43-5d6c-4c79-9d5e-1f8f3f8a9b10", 1, 2)
    call ctx%report_task_using_checkpoint("", stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "checkpoint uuid is empty", "empty checkpoint uuid")
    call expect(detcore_cluster_info_json(dir // "/no-info") == "", "no cluster info off-cluster")
    call write_text(dir // "/cluster.json", "{")
    s = detcore_cluster_info_json(dir, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "cluster.json: broken JSON", "broken cluster.json")

    ! After close, `default` does not hide the failure.
    copy%ptr = ctx%ptr
    call ctx%close()
    n = copy%trial_id(default=-1, stat=st)
    call expect_err(st, DET_ERR_STATE, "closed by det_core_close", "trial_id after close")
    s = copy%task_type(default="x", stat=st)
    call expect_err(st, DET_ERR_STATE, "closed by det_core_close", "task_type after close")
    call expect(copy%container_count(stat=st) == 0, "no containers after close")
    call expect_err(st, DET_ERR_STATE, "closed by det_core_close", "container_count after close")
    call expect(copy%slot_id_count(stat=st) == 0, "no slot ids after close")
    call expect_err(st, DET_ERR_STATE, "closed by det_core_close", "slot_id_count after close")
    call copy%alert("t", stat=st)
    call expect_err(st, DET_ERR_STATE, "closed by det_core_close", "alert after close")
    copy%ptr = c_null_ptr

    ! The Determined launcher reads the info folder, absent off-cluster.
    call expect(setenv("DET_CLUSTER_INFO_DIR", dir // "/no-info") == 0, "setenv")
    cfg = detcore_distributed_default()
    call detcore_distributed_from_env(cfg, DET_LAUNCHER_DETERMINED, stat=st)
    call expect(st /= DET_OK .and. index(detcore_last_error(), "no-info") > 0, &
         "from_env(DET_LAUNCHER_DETERMINED) off-cluster: " // detcore_last_error())
    call expect(unsetenv("DET_CLUSTER_INFO_DIR") == 0, "unsetenv")
    write(*, '(a)') "ok   " // current
  end subroutine

  subroutine test_tensorboard_writer()
    type(det_context) :: ctx
    type(det_tb_writer) :: tb
    character(len=:), allocatable :: dir, tbdir
    real(real64) :: six(6)
    integer :: st
    current = "tensorboard_writer"
    dir = tmpdir("tbw")
    call open_ctx(ctx, dir, "tbw")
    tbdir = ctx%tensorboard_path()
    call expect(tbdir == dir // "/run/tensorboard", "tensorboard_path " // tbdir)
    call tb%add_scalar("x", 1, 1d0, stat=st)
    call expect_err(st, DET_ERR_STATE, "not open", "add_scalar before open")
    call tb%open("", stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "dir is empty", "empty dir")
    call expect(.not. tb%is_open(), "not open after a failure")
    call tb%open(tbdir // "/mine")
    call expect(tb%is_open(), "open")
    call tb%open(tbdir // "/again", stat=st)
    call expect_err(st, DET_ERR_STATE, "already open", "open twice")
    call tb%add_scalar("residual", 1, 0.5d0)
    call tb%add_scalar("residual", 2_int64, 0.25d0)
    call tb%add_histogram("field", 2, [0d0, 1d0, 1d0, 2.5d0])
    six = [1d0, 2d0, 3d0, 4d0, 5d0, 6d0]
    call tb%add_histogram("strided", 2, six(1:6:2))  ! a non-contiguous section
    call tb%add_histogram("empty", 3, [real(real64) ::])
    call tb%flush()
    call expect(file_contains(tbdir // "/mine/events.out.tfevents.*", "residual"), "scalar written")
    call expect(file_contains(tbdir // "/mine/events.out.tfevents.*", "strided"), "histogram written")
    call tb%close()
    call expect(.not. tb%is_open(), "closed")
    call tb%close(stat=st)
    call expect_err(st, DET_ERR_STATE, "already closed", "close twice")
    call tb%flush(stat=st)
    call expect_err(st, DET_ERR_STATE, "not open", "flush after close")
    call tb%add_histogram("h", 1, [1d0], stat=st)
    call expect_err(st, DET_ERR_STATE, "not open", "add_histogram after close")
    ! a writer local to a procedure is closed (its events written) when the procedure returns
    call write_in_scope(tbdir // "/scoped")
    call expect(file_contains(tbdir // "/scoped/events.out.tfevents.*", "finalized"), "finalizer wrote the events")
    call ctx%close()
    write(*, '(a)') "ok   " // current
  end subroutine

  subroutine write_in_scope(d)
    character(len=*), intent(in) :: d
    type(det_tb_writer) :: w
    call w%open(d)
    call w%add_scalar("finalized", 1, 1d0)
  end subroutine

  subroutine test_tensorboard_upload()
    type(det_context) :: ctx
    character(len=:), allocatable :: dir, tbdir, synced
    type(c_funptr), save :: sel, man, long
    integer :: st
    current = "tensorboard_upload"
    dir = tmpdir("tbup")
    call open_ctx(ctx, dir, "tbauto")
    call ctx%upload_tensorboard_files(stat=st)
    call expect_err(st, DET_ERR_STATE, "can only be used in MANUAL mode", "upload in AUTO mode")
    call ctx%flush_tensorboard(-1d0, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "timeout_seconds", "negative timeout")
    call ctx%close()

    call ctx%init(checkpoint_storage=dir // "/ckpts", run_dir=dir // "/run", run_name="tbman", &
         cluster_info_dir="/nonexistent/detcore-test-info", tensorboard_mode=DET_TENSORBOARD_MODE_MANUAL)
    tbdir = ctx%tensorboard_path()
    synced = dir // "/ckpts/local/tensorboard/experiment/runs/trial/tbman"
    call execute_command_line("mkdir -p " // tbdir // "/sub")
    call write_text(tbdir // "/sub/a.txt", "a")
    call write_text(tbdir // "/b.txt", "b")
    call write_text(tbdir // "/skip.log", "s")
    sel = c_funloc(skip_logs)
    man = c_funloc(rank_mangler)
    long = c_funloc(long_mangler)
    call ctx%upload_tensorboard_files(mangler=long, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "the mangler returned false", "mangler name too long")
    call ctx%upload_tensorboard_files(selector=sel, mangler=man)
    call ctx%flush_tensorboard(30d0)
    call expect(read_text(synced // "/rank0/sub/a.txt") == "a", "selected file uploaded, renamed")
    call expect(read_text(synced // "/rank0/b.txt") == "b", "second file uploaded")
    call expect(.not. exists(synced // "/rank0/skip.log"), "unselected file left out")
    call ctx%upload_tensorboard_files()
    call ctx%flush_tensorboard()
    call expect(read_text(synced // "/skip.log") == "s", "no callbacks: every file, same name")
    call ctx%close()
    write(*, '(a)') "ok   " // current
  end subroutine

  subroutine test_profiler()
    type(det_context) :: ctx
    character(len=:), allocatable :: dir
    integer :: st
    current = "profiler"
    dir = tmpdir("prof")
    call open_ctx(ctx, dir, "prof")
    call ctx%profiler_on(0.05d0, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "Sampling interval must be > 0.1, got 0.05.", "interval too short")
    call ctx%profiler_on(1d0, 0, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "It must be an int > 1", "no samples per report")
    call ctx%profiler_on(0.1d0, 2)
    call ctx%profiler_on()  ! idempotent
    call execute_command_line("sleep 0.5")
    call ctx%profiler_off()
    call ctx%profiler_off()  ! idempotent
    call ctx%flush(30d0)
    call expect(file_contains(dir // "/run/metrics.jsonl", '"group": "cpu"'), "cpu group reported")
    call expect(file_contains(dir // "/run/metrics.jsonl", '"group": "memory"'), "memory group reported")
    call ctx%close()
    write(*, '(a)') "ok   " // current
  end subroutine

  subroutine test_upload_modes()
    type(det_context) :: ctx
    type(det_store) :: store
    character(len=:), allocatable :: dir
    character(len=36) :: id
    integer :: st
    current = "upload_modes"
    dir = tmpdir("modes")
    call open_ctx(ctx, dir, "modes")
    call ctx%store_path(store, steps_completed=1)
    call write_text(store%path() // "/m", "1")
    call store%commit(id, upload_mode=DET_UPLOAD_MODE_ASYNC)
    call expect(.not. store%is_open(), "async commit ends the scope")
    call ctx%wait_checkpoints()
    call expect(read_text(dir // "/ckpts/" // id // "/m") == "1", "async checkpoint stored")
    call ctx%store_path(store, steps_completed=2)
    call write_text(store%path() // "/m", "2")
    call store%commit(id, stat=st, upload_mode=9)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "upload_mode: unknown value 9", "bad upload mode")
    call expect(store%is_open(), "a refused mode leaves the scope open")
    call expect(id == "", "no id after a failure")
    call store%commit(id, upload_mode=DET_UPLOAD_MODE_SYNC)
    call expect(read_text(dir // "/ckpts/" // id // "/m") == "2", "sync checkpoint stored")
    call store%commit(stat=st, upload_mode=DET_UPLOAD_MODE_SYNC)
    call expect(st /= DET_OK, "commit after commit fails")
    call ctx%close()
    write(*, '(a)') "ok   " // current
  end subroutine

  integer function unsetenv(name)
    character(len=*), intent(in) :: name
    interface
      function c_unsetenv(n) bind(c, name="unsetenv")
        import :: c_char, c_int
        character(kind=c_char), dimension(*), intent(in) :: n
        integer(c_int) :: c_unsetenv
      end function
    end interface
    unsetenv = c_unsetenv(name // c_null_char)
  end function

  integer function setenv(name, value)
    character(len=*), intent(in) :: name, value
    interface
      function c_setenv(n, v, overwrite) bind(c, name="setenv")
        import :: c_char, c_int
        character(kind=c_char), dimension(*), intent(in) :: n, v
        integer(c_int), value :: overwrite
        integer(c_int) :: c_setenv
      end function
    end interface
    setenv = c_setenv(name // c_null_char, value // c_null_char, 1_c_int)
  end function

  subroutine test_preemption()
    type(det_context) :: ctx
    logical :: known
    real(real64) :: s
    integer, parameter :: sigusr2 = 12
    current = "preemption"
    call ctx%init(checkpoint_storage=tmpdir("preempt") // "/c", run_name="preempt", cluster_info_dir="/nonexistent", &
         preempt_signals=[sigusr2], end_time=1d12)
    call expect(.not. ctx%should_preempt(), "not preempted yet")
    s = ctx%seconds_remaining(known)
    call expect(known .and. s > 0, "seconds remaining known")
    call expect(c_raise(int(sigusr2, c_int)) == 0, "raise")
    call expect(ctx%should_preempt(auto_ack=.false.), "preempted by the signal")
    call expect(ctx%should_preempt(), "sticky")
    call ctx%acknowledge_preemption()
    call ctx%close()
    write(*, '(a)') "ok   " // current
  end subroutine

end program
