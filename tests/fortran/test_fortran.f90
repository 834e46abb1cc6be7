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
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "9 is not a signal that can be caught", "SIGKILL")

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
    call ctx%init(checkpoint_storage=tmpdir("dist") // "/c", run_name="dist", cluster_info_dir="/nonexistent")
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
    call detcore_distributed_from_env(cfg, DET_LAUNCHER_SLURM)
    call expect(cfg%rank == 1 .and. cfg%size == 2 .and. cfg%local_size == 2, "slurm ranks")
    call expect(setenv("SLURM_PROCID", "7") == 0, "setenv")
    call detcore_distributed_from_env(cfg, DET_LAUNCHER_SLURM, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "rank 7 must be less than size 2", "bad slurm rank")
    call detcore_distributed_from_env(cfg, 99, stat=st)
    call expect_err(st, DET_ERR_INVALID_ARGUMENT, "launcher: unknown value 99", "bad launcher")
    write(*, '(a)') "ok   " // current
  end subroutine

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
