# Letterbox A/B boot selection (U-Boot hush script; compiled to boot.scr with
#   mkimage -A arm64 -T script -C none -n letterbox -d boot.cmd boot.scr).
# firmware/README.md explains the scheme; test/system/sim-device.ts
# bootScript() is this file line by line, and the power-cut tests run it.
#
#   BOOT_ORDER     slots to try, preferred first ("A B", "B A", "A")
#   BOOT_x_LEFT    boot attempts left for slot x
#   LB_MACHINE_ID  this device's machine id, passed to systemd (set by Linux)
#
# Take the first slot in BOOT_ORDER with tries left, decrement its counter,
# save the environment, boot it. Userspace (letterbox update commit, after the
# health check) gives a healthy slot its tries back; a trial slot gets one try.
# Missing variables (a fresh card, or an environment that failed its CRC and
# was replaced by U-Boot's default) mean: "A B", 3 tries each.

# Where the environment lives. On the Pi, Debian's rpi_arm64 U-Boot keeps it
# in uboot.env on the config partition (CONFIG_ENV_IS_IN_FAT): U-Boot loaded
# it before this script, and saveenv writes it. Debian's qemu_arm64 U-Boot
# (the boot test, test/image/) keeps its own in flash, so there the script
# reads and writes the same uboot.env file itself, the one
# `letterbox update` writes (rootfs-overlay/etc/fw_env.config).
if test "${board}" = "qemu-arm"; then
  # A missing or torn file (CRC) leaves the variables unset: the defaults below apply.
  # (Staged at kernel_addr_r: scriptaddr holds this script, and the kernel comes later.)
  if load ${devtype} ${devnum}:1 ${kernel_addr_r} uboot.env; then
    env import -c ${kernel_addr_r} 0x4000 BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT LB_MACHINE_ID
  fi
  setenv lb_console "console=ttyAMA0,115200"
  setenv lb_saveenv 'env export -c -s 0x4000 ${kernel_addr_r} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT LB_MACHINE_ID lb_console; fatwrite ${devtype} ${devnum}:1 ${kernel_addr_r} uboot.env 0x4000'
else
  setenv lb_saveenv saveenv
fi

test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3
test -n "${lb_console}" || setenv lb_console "console=tty1"

setenv lb_slot
for BOOT_SLOT in "${BOOT_ORDER}"; do
  if test -z "${lb_slot}"; then
    if test "x${BOOT_SLOT}" = "xA"; then
      if test ${BOOT_A_LEFT} -gt 0; then
        setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
        setenv lb_slot A
        setenv lb_bootpart 2
        setenv lb_rootpart 5
      fi
    elif test "x${BOOT_SLOT}" = "xB"; then
      if test ${BOOT_B_LEFT} -gt 0; then
        setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
        setenv lb_slot B
        setenv lb_bootpart 3
        setenv lb_rootpart 6
      fi
    fi
  fi
done

if test -z "${lb_slot}"; then
  echo "letterbox: no slot has tries left; starting over with A B"
  setenv BOOT_ORDER "A B"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
  run lb_saveenv
  reset
fi

# The decremented counter is on disk before the kernel starts: a kernel that
# hangs or panics (panic=10), or a system the watchdog resets, has used its try.
run lb_saveenv

# devtype/devnum come from the distro boot scan that found this script
# (mmc 0 on a Pi, virtio 0 under qemu -M virt).
part uuid ${devtype} ${devnum}:${lb_rootpart} lb_rootuuid

# --- board: which device tree and serial console (the slot logic above is the same on every board)
# The tree's name: fdtfile, set by U-Boot's board code from the board
# revision (e.g. broadcom/bcm2711-rpi-4-b.dtb; unset under qemu).
setenv lb_fdtfile "${fdtfile}"
setenv lb_console_board
# Raspberry Pi 5: U-Boot names broadcom/bcm2712-rpi-5-b.dtb for every Pi 5
# (revision 0x17), but boards with the D0 stepping of the BCM2712 need
# bcm2712-d-rpi-5-b.dtb (their pin controllers differ: "brcm,bcm2712d0-pinctrl").
# The Pi 5 firmware loaded the tree of the board's stepping from the config
# partition and handed it to U-Boot (fdt_addr): its pin controller tells which.
if test "${fdtfile}" = "broadcom/bcm2712-rpi-5-b.dtb"; then
  if test -n "${fdt_addr}"; then
    fdt addr ${fdt_addr}
    if fdt get value lb_pinctrl /soc@107c000000/pinctrl@7d504100 compatible; then
      if test "${lb_pinctrl}" = "brcm,bcm2712d0-pinctrl"; then
        setenv lb_fdtfile broadcom/bcm2712-d-rpi-5-b.dtb
      fi
    fi
  fi
  # The Pi 5's debug UART (the 3-pin connector, uart10 in its tree) is ttyAMA10.
  setenv lb_console_board "console=ttyAMA10,115200"
fi
# --- end board

# The device tree that matches the slot's kernel comes from the slot itself;
# without one, the tree the Pi firmware handed over (fdt_addr), or under qemu
# U-Boot's own control tree.
if test -n "${lb_fdtfile}" && load ${devtype} ${devnum}:${lb_bootpart} ${fdt_addr_r} dtbs/${lb_fdtfile}; then
  setenv lb_fdt ${fdt_addr_r}
elif test -n "${fdt_addr}"; then
  setenv lb_fdt ${fdt_addr}
else
  setenv lb_fdt ${fdtcontroladdr}
fi
# The machine id: /etc/machine-id is empty on the read-only root, so systemd
# takes the id from the kernel command line (machine-id(5)). LB_MACHINE_ID is
# saved by letterbox-machine-id.service on the first boot; until then (or
# after U-Boot had to reset a torn environment) this boot is the first boot
# (ConditionFirstBoot=yes), and systemd makes a new id that the service saves.
if test -n "${LB_MACHINE_ID}"; then
  setenv lb_machine "systemd.machine_id=${LB_MACHINE_ID}"
else
  setenv lb_machine "systemd.condition_first_boot=true"
fi
setenv bootargs "${lb_console} ${lb_console_board} root=PARTUUID=${lb_rootuuid} ro rootfstype=ext4 rootwait panic=10 letterbox.slot=${lb_slot} ${lb_machine}"
echo "letterbox: booting slot ${lb_slot} (boot ${devtype} ${devnum}:${lb_bootpart}, root PARTUUID=${lb_rootuuid})"
# Image is the uncompressed arm64 kernel (image build: zcat vmlinuz > Image),
# so booti needs no kernel_comp_addr_r.
if load ${devtype} ${devnum}:${lb_bootpart} ${kernel_addr_r} Image; then
  if load ${devtype} ${devnum}:${lb_bootpart} ${ramdisk_addr_r} initrd.img; then
    booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${lb_fdt}
  fi
fi
# Only reached when the slot's kernel or initrd could not be loaded (a slot
# being rewritten has no valid file system): its try is spent, start over.
echo "letterbox: slot ${lb_slot} does not load; resetting"
reset
