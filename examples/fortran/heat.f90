!> An explicit 2-D heat-equation solver on detcore, the way an HPC code uses it:
!>
!>   u_t = alpha * (u_xx + u_yy) on the unit square, u = 0 on the boundary,
!>   u(x, y, 0) = sin(pi x) sin(pi y) + 0.5 sin(3 pi x) sin(2 pi y)
!>
!> with the 5-point stencil and forward Euler (dt = cfl * h^2 / alpha, cfl <= 0.25).
!>  - every `report_every` steps it reports the residual max|du/dt| and the L2 norm of the update
!>    as training metrics, every `validate_every` steps the error against the exact solution as a
!>    validation metric (metrics.jsonl / TensorBoard off-cluster, the WebUI on-cluster);
!>  - every `checkpoint_every` steps it checkpoints the field (field.bin);
!>  - it checks `ctx%should_preempt()` every step; on SIGTERM/SIGUSR1, DET_HALT_FILE, the Slurm
!>    time limit or the master's request it checkpoints and exits 0;
!>  - started again, it restarts from the latest checkpoint of its run (DET_RUN_NAME).
!> At the end it writes the final field to heat_final.bin and prints its checksum: a run that was
!> preempted and restarted ends with exactly the same field as one that was not.
!>
!> Configure with DET_HPARAMS='{"nx": 128, "ny": 128, "steps": 4000, "checkpoint_every": 500}'.
program heat
  use, intrinsic :: iso_fortran_env, only: int8, int64, real64, output_unit, error_unit
  use detcore
  implicit none

  real(real64), parameter :: pi = 3.141592653589793d0
  type(det_context) :: ctx
  integer :: nx, ny, report_every, validate_every, checkpoint_every
  integer(int64) :: nsteps, step, start
  real(real64) :: alpha, cfl, h, dt, r, res, l2, err
  real(real64), allocatable :: u(:, :), unew(:, :)
  character(len=:), allocatable :: latest
  logical :: preempted

  call ctx%init()  ! everything from the environment: DET_HPARAMS, DET_RUN_NAME, DET_HALT_FILE, ...
  nx = int(ctx%hparam_int("nx", default=128))
  ny = int(ctx%hparam_int("ny", default=128))
  nsteps = ctx%hparam_int("steps", default=4000)
  report_every = int(ctx%hparam_int("report_every", default=50))
  validate_every = int(ctx%hparam_int("validate_every", default=500))
  checkpoint_every = int(ctx%hparam_int("checkpoint_every", default=500))
  alpha = ctx%hparam_real("alpha", default=1.0d0)
  cfl = ctx%hparam_real("cfl", default=0.2d0)
  if (nx < 3 .or. ny < 3 .or. nsteps < 1 .or. report_every < 1 .or. validate_every < 1 .or. &
      checkpoint_every < 1 .or. alpha <= 0 .or. cfl <= 0 .or. cfl > 0.25d0) then
    write(error_unit, '(a)') "heat: bad hyperparameters (need nx, ny >= 3, positive counts, 0 < cfl <= 0.25)"
    error stop 2
  end if
  h = 1.0d0 / real(max(nx, ny) - 1, real64)
  dt = cfl * h * h / alpha
  r = alpha * dt / (h * h)

  allocate(u(nx, ny), unew(nx, ny))
  call initial_field(u)
  unew = u
  step = 0
  latest = ctx%latest_checkpoint()
  if (len(latest) > 0) then
    call restore(latest, u, step)
    write(output_unit, '(a,a,a,i0)') "resumed from checkpoint ", latest, " at step ", step
  else
    write(output_unit, '(a)') "starting fresh"
  end if
  flush(output_unit)
  start = step
  call ctx%set_status("solving")

  preempted = .false.
  do while (step < nsteps)
    unew(2:nx-1, 2:ny-1) = u(2:nx-1, 2:ny-1) + r * (u(1:nx-2, 2:ny-1) + u(3:nx, 2:ny-1) &
         + u(2:nx-1, 1:ny-2) + u(2:nx-1, 3:ny) - 4.0d0 * u(2:nx-1, 2:ny-1))
    step = step + 1
    if (mod(step, int(report_every, int64)) == 0) then
      res = maxval(abs(unew - u)) / dt
      l2 = sqrt(sum((unew - u)**2) * h * h)
      call ctx%report_training_metrics(step, [character(len=16) :: "residual", "l2_update"], [res, l2])
    end if
    u = unew
    if (mod(step, int(validate_every, int64)) == 0 .or. step == nsteps) then
      err = max_error(u, real(step, real64) * dt)
      call ctx%report_validation_metrics(step, [character(len=16) :: "max_error"], [err])
      call ctx%report_progress(real(step, real64) / real(nsteps, real64))
      write(output_unit, '(a,i0,a,es12.5)') "step ", step, ": max error vs exact solution ", err
      flush(output_unit)
    end if
    if (mod(step, int(checkpoint_every, int64)) == 0 .and. step < nsteps) call save("periodic")
    if (ctx%should_preempt() .and. step < nsteps) then
      write(output_unit, '(a,i0,a)') "preempted at step ", step, ": saving and exiting"
      call save("preempted")
      preempted = .true.
      exit
    end if
  end do

  if (.not. preempted) then
    if (step > start) call save("final")
    call write_result(u)
    write(output_unit, '(a,i0,a,z8.8)') "solver finished at step ", step, "; field checksum ", checksum(u)
  end if
  call ctx%close()

contains

  subroutine initial_field(f)
    real(real64), intent(out) :: f(:, :)
    integer :: i, j
    real(real64) :: x, y
    do j = 1, ny
      do i = 1, nx
        x = real(i - 1, real64) / real(nx - 1, real64)
        y = real(j - 1, real64) / real(ny - 1, real64)
        f(i, j) = sin(pi * x) * sin(pi * y) + 0.5d0 * sin(3 * pi * x) * sin(2 * pi * y)
      end do
    end do
    f(1, :) = 0
    f(nx, :) = 0
    f(:, 1) = 0
    f(:, ny) = 0
  end subroutine

  !> max |u - exact| at time t (the continuous solution, so this includes discretization error).
  real(real64) function max_error(f, t)
    real(real64), intent(in) :: f(:, :), t
    integer :: i, j
    real(real64) :: x, y, exact, hx, hy
    hx = 1.0d0 / real(nx - 1, real64)
    hy = 1.0d0 / real(ny - 1, real64)
    max_error = 0
    do j = 1, ny
      do i = 1, nx
        x = (i - 1) * hx
        y = (j - 1) * hy
        exact = exp(-2 * pi**2 * alpha * t) * sin(pi * x) * sin(pi * y) &
             + 0.5d0 * exp(-13 * pi**2 * alpha * t) * sin(3 * pi * x) * sin(2 * pi * y)
        max_error = max(max_error, abs(f(i, j) - exact))
      end do
    end do
  end function

  !> Checkpoint the field: store_path → write field.bin → commit.
  subroutine save(why)
    character(len=*), intent(in) :: why
    type(det_store) :: store
    character(len=36) :: id
    integer :: unit, ios
    ! steps_completed as a number; the other metadata entries as JSON
    call ctx%store_path(store, steps_completed=step, metadata_json='{"reason": "' // why // '", "solver": "heat2d"}')
    open(newunit=unit, file=store%path() // "/field.bin", access="stream", form="unformatted", &
         status="replace", action="write", iostat=ios)
    if (ios == 0) write(unit, iostat=ios) int(nx, int64), int(ny, int64), step, u
    if (ios == 0) close(unit, iostat=ios)
    if (ios /= 0) then
      call store%abort()  ! nothing half-written becomes a checkpoint
      write(error_unit, '(a)') "heat: cannot write the checkpoint"
      error stop 2
    end if
    call store%commit(id)
    write(output_unit, '(a,a,a,i0,a,a,a)') "checkpoint ", id, " at step ", step, " (", why, ")"
    flush(output_unit)
  end subroutine

  subroutine restore(storage_id, f, at_step)
    character(len=*), intent(in) :: storage_id
    real(real64), intent(inout) :: f(:, :)
    integer(int64), intent(out) :: at_step
    type(det_restore) :: rp
    integer(int64) :: cnx, cny
    integer :: unit, ios
    call ctx%restore_path(rp, storage_id)
    ! rp%path() and its files exist until rp%close(): read everything first
    open(newunit=unit, file=rp%path() // "/field.bin", access="stream", form="unformatted", &
         status="old", action="read", iostat=ios)
    if (ios == 0) read(unit, iostat=ios) cnx, cny, at_step
    if (ios == 0 .and. (cnx /= nx .or. cny /= ny)) ios = -99
    if (ios == 0) read(unit, iostat=ios) f
    if (ios == 0) close(unit)
    call rp%close()
    if (ios /= 0) then
      write(error_unit, '(a,a,a)') "heat: checkpoint ", storage_id, " does not hold a field of this size"
      error stop 2
    end if
  end subroutine

  subroutine write_result(f)
    real(real64), intent(in) :: f(:, :)
    integer :: unit
    open(newunit=unit, file="heat_final.bin", access="stream", form="unformatted", status="replace")
    write(unit) f
    close(unit)
  end subroutine

  !> FNV-1a (32-bit) of the field's bytes.
  integer(int64) function checksum(f)
    real(real64), intent(in) :: f(:, :)
    integer(int8), allocatable :: bytes(:)
    integer :: i
    allocate(bytes(size(f) * (storage_size(f) / 8)))
    bytes(:) = transfer(f, bytes)
    checksum = int(z'811C9DC5', int64)
    do i = 1, size(bytes)
      checksum = ieor(checksum, iand(int(bytes(i), int64), 255_int64))
      checksum = iand(checksum * 16777619_int64, int(z'FFFFFFFF', int64))
    end do
  end function

end program heat
