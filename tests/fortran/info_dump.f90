!> Prints what the Fortran module knows of the cluster (one `key=value` line each; `<none>` for
!> an unknown value), and detcore_cluster_info_json(); in a trial it also sends one alert, stores a
!> checkpoint and reports it with the experimental calls, and uploads the TensorBoard folder in
!> MANUAL mode. Run on-cluster against the fake master by tests/python/test_bindings_oncluster.py.
program info_dump
  use, intrinsic :: iso_fortran_env, only: int64
  use detcore
  implicit none
  type(det_context) :: ctx
  type(det_tb_writer) :: tb
  type(det_store) :: store
  character(len=DET_STORAGE_ID_LEN) :: id
  integer :: i, n
  character(len=:), allocatable :: s

  call ctx%init(tensorboard_mode=DET_TENSORBOARD_MODE_MANUAL, disable_signal_handlers=.true.)
  write(*, '(a,l1)') "on_cluster=", ctx%on_cluster()
  call int_line("trial_id", ctx%trial_id(default=-1))
  call int_line("experiment_id", ctx%experiment_id(default=-1))
  call int_line("trial_seed", ctx%trial_seed(default=-1))
  call int_line("trial_run_id", ctx%trial_run_id(default=-1))
  call str_line("task_type", ctx%task_type(default="<none>"))
  call str_line("task_id", ctx%task_id(default="<none>"))
  call str_line("allocation_id", ctx%allocation_id(default="<none>"))
  call str_line("cluster_id", ctx%cluster_id(default="<none>"))
  call str_line("agent_id", ctx%agent_id(default="<none>"))
  call str_line("master_url", ctx%master_url(default="<none>"))
  call int_line("container_rank", int(ctx%container_rank(default=-1), int64))
  call str_line("user_data_json", ctx%user_data_json(default="<none>"))
  call str_line("experiment_config_json", ctx%experiment_config_json(default="<none>"))

  s = ""
  do i = 0, ctx%container_count() - 1
    if (i > 0) s = s // ","
    s = s // ctx%container_addr(i)
  end do
  call str_line("container_addrs", s)
  s = ""
  do i = 0, ctx%container_count() - 1
    if (i > 0) s = s // ","
    s = s // itoa(int(ctx%container_slot_count(i), int64))
  end do
  call str_line("container_slot_counts", s)
  s = ""
  n = ctx%slot_id_count()
  do i = 0, n - 1
    if (i > 0) s = s // ","
    s = s // itoa(int(ctx%slot_id(i), int64))
  end do
  call str_line("slot_ids", s)
  s = ""
  do i = 0, ctx%gpu_uuid_count() - 1
    if (i > 0) s = s // ","
    s = s // ctx%gpu_uuid(i)
  end do
  call str_line("gpu_uuids", s)
  if (ctx%task_type() == "TRIAL") then
    if (ctx%trial_debug()) then
      call str_line("trial_debug", "true")
    else
      call str_line("trial_debug", "false")
    end if
  else
    if (ctx%trial_debug(default=.false.)) call str_line("trial_debug", "unexpected")
    call str_line("trial_debug", "<none>")
  end if
  call str_line("inter_node_network_interface", ctx%inter_node_network_interface(default="<none>"))
  call str_line("cluster_info_json", detcore_cluster_info_json())
  if (ctx%task_type() /= "TRIAL") then  ! no alerts, no TensorBoard
    call ctx%close()
    stop
  end if
  call str_line("tensorboard_path", ctx%tensorboard_path())

  call ctx%alert("from Fortran", "info_dump", level=DET_ALERT_LEVEL_ERROR)
  call ctx%store_path(store, steps_completed=1)
  call store%commit(id)
  call ctx%report_task_using_checkpoint(id)
  call ctx%report_task_using_model_version(id, 5, 3)
  call tb%open(ctx%tensorboard_path())
  call tb%add_scalar("fortran/x", 1, 0.5d0)
  call tb%close()
  call ctx%upload_tensorboard_files()
  call ctx%flush_tensorboard(30d0)
  call ctx%close()

contains

  function itoa(v) result(t)
    integer(int64), intent(in) :: v
    character(len=:), allocatable :: t
    character(len=24) :: buf
    write(buf, '(i0)') v
    t = trim(buf)
  end function

  subroutine int_line(key, v)
    character(len=*), intent(in) :: key
    integer(int64), intent(in) :: v
    if (v == -1) then
      write(*, '(a)') key // "=<none>"
    else
      write(*, '(a)') key // "=" // itoa(v)
    end if
  end subroutine

  subroutine str_line(key, v)
    character(len=*), intent(in) :: key, v
    write(*, '(a)') key // "=" // v
  end subroutine
end program
