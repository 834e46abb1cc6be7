! Uses the installed Fortran module.
program consumer_fortran
  use detcore
  implicit none
  type(det_context) :: ctx
  type(det_store) :: store
  character(len=512) :: dir
  character(len=36) :: id
  call get_command_argument(1, dir)
  call ctx%init(checkpoint_storage=trim(dir) // "/c", run_dir=dir, cluster_info_dir="/nonexistent")
  call ctx%store_path(store, steps_completed=1)
  call store%commit(id)
  call ctx%close()
  print '(a,a)', "consumer_fortran ok ", id
end program
