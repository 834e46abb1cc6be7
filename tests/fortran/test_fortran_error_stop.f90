!> Without `stat`, a failing call stops the program with detcore's message (ctest checks the
!> output for "detcore: DET_ERR_INVALID_ARGUMENT: det_core_init: checkpoint_storage: unknown scheme").
program test_fortran_error_stop
  use detcore
  implicit none
  type(det_context) :: ctx
  call ctx%init(checkpoint_storage="ftp://nowhere", cluster_info_dir="/nonexistent")
  print '(a)', "not reached"
end program
