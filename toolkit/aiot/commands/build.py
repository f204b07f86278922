"""`aiot build`: compile the firmware for a board, with or without a model."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import Command, OutPath, wrote


@click.command("build", cls=Command)
@click.option("--board", "-b", default="mps2-an386", show_default=True, help="Board name (see `aiot boards`).")
@click.option("--package", "-p", "package", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Model package folder; its generated C (PKG/c, made by `aiot codegen`) is linked in.")
@click.option("--model-c", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder with a generated model.c/model.h instead.")
@click.option("--out", "-o", type=OutPath(), help="Output folder [default: build/fw/BOARD under the current folder].")
@click.option("--opt", default="-O2", show_default=True, type=click.Choice(["-O0", "-O1", "-O2", "-O3", "-Os"]),
              help="Optimization level.")
@click.option("--profile", is_flag=True, help="Record per-layer tick counts (AIOT_PROFILE).")
@click.option("--update-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Take signed model updates (aiot update) verified with this release key (PEM; only its public "
                   "half is built in). Needs the board file's [update] layout.")
@click.option("--plan-arena", type=click.IntRange(min=64), metavar="BYTES",
              help="--update-key: RAM the release's model-as-data plan runs in (AIOT_UPDATE_PLAN_ARENA) "
                   "[default: 2048]; a plan's need is its arena_bytes (`aiot release` refuses a larger one).")
@click.option("--plan-layers", type=click.IntRange(min=1, max=255), metavar="N",
              help="--update-key: most layers a release's plan may have (AIOT_PLAN_MAX_LAYERS) [default: 16].")
@click.option("--plan-ops", type=click.Choice(["all", "dense"]),
              help="--update-key: the layers a release's plan may have [default: dense: FULLY_CONNECTED only, the "
                   "autoencoders aiot trains]; all (AIOT_PLAN_ALL_OPS): conv models too, about 18 KB more flash "
                   "(every kernel a plan may call is linked).")
@click.option("--signed", "sign_key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Link into the board's MCUboot primary slot and write firmware.signed.bin signed with this key.")
@click.option("--version", "image_version", default="0.1.0", show_default=True, help="--signed: image version.")
@click.option("--device-id", help="The id the device's INFO reports, written into the image, for boards whose chip has "
                                  "no unique id register (the others report that register) [default with "
                                  "--update-key: a random build-XXXXXXXXXXXXXXXX, recorded in build.json].")
def command(board: str, package: Path | None, model_c: Path | None, out: Path | None, opt: str, profile: bool,
            update_key: Path | None, plan_arena: int | None, plan_layers: int | None, plan_ops: str | None,
            sign_key: Path | None,
            image_version: str, device_id: str | None) -> None:
    """Build firmware for BOARD with arm-none-eabi-gcc and print its flash/RAM split.

    \b
    Examples:
      aiot build --board mps2-an386 --package build/pkg
      aiot build --board microbit                # no model: protocol + monitor only
      aiot build --board mps2-an386 --package build/pkg --update-key keys/release.pem
      aiot build --board nucleo-f446re --package build/pkg --signed keys/boot.pem
      aiot build --board mps2-an386 --package build/pkg --update-key keys/release.pem --plan-arena 16384
    """
    import json
    from aiot import paths
    from aiot.target.boards import get_board
    from aiot.errors import ToolkitError
    from aiot.target.firmware import build

    b = get_board(board)
    if package and model_c:
        raise ToolkitError("give either --package or --model-c, not both")
    model_dir = model_c or (package / "c" if package else None)
    out = out or paths.build_dir() / "fw" / b.name
    defines = ["AIOT_PROFILE"] if profile else []
    if (plan_arena or plan_layers or plan_ops) and not update_key:
        raise ToolkitError("--plan-arena, --plan-layers and --plan-ops size the model-update service: they need "
                           "--update-key",
                           hint="aiot build --board BOARD --package PKG --update-key KEY.pem --plan-arena BYTES")
    if plan_arena:
        defines.append(f"AIOT_UPDATE_PLAN_ARENA={(plan_arena + 3) // 4 * 4}u")
    if plan_layers:
        defines.append(f"AIOT_PLAN_MAX_LAYERS={plan_layers}u")
    if update_key and device_id is None and b.device_uid is None:
        import secrets  # the registry tells devices apart by this id: one per image built

        device_id = f"build-{secrets.token_hex(8)}"
    from aiot.target.firmware import device_id_defines

    defines += device_id_defines(b, device_id)
    board_file = b
    if update_key:
        from aiot.lifecycle.firmware import update_board

        b = update_board(b, signed=bool(sign_key))  # code kept out of the update areas (and in the slot)
    elif sign_key:
        from aiot.lifecycle.signed_image import slot_board

        b = slot_board(b)  # linked where MCUboot jumps: primary slot + image header
    from dataclasses import replace

    from aiot.outputs import output_folder

    # built in staging and moved into place whole (image, its record, the signed image): a
    # killed build leaves the previous one, and one build at a time writes the folder
    with output_folder(out, "aiot build") as run:
        stage = run.folder
        if update_key:
            from aiot.lifecycle import package as P
            from aiot.lifecycle.firmware import build_update_firmware

            res = build_update_firmware(board_file, stage, model_dir, public_key=P.public_key(update_key),
                                        defines=defines, opt=opt, signed=bool(sign_key), plan_ops=plan_ops or "dense")
            doc = json.loads((stage / "build.json").read_text())
            doc["model_abi"] = P.MODEL_ABI  # what aiot models promote --firmware checks
            # the largest release plan it loads (aiot release --firmware)
            doc["plan_arena"] = (plan_arena + 3) // 4 * 4 if plan_arena else P.PLAN_ARENA
            doc["plan_layers"] = plan_layers or P.PLAN_LAYERS
            doc["plan_ops"] = plan_ops or "dense"
            # what its INFO reports as the device id (aiot update records the device by it)
            doc["device_id"] = device_id or "uid: the chip's unique id register"
            (stage / "build.json").write_text(json.dumps(doc, indent=2))
        else:
            res = build(b, stage, model_dir, opt=opt, defines=defines)
        if sign_key:
            from aiot.lifecycle.signed_image import sign_firmware

            signed = sign_firmware(board_file, res.bin, sign_key, version=image_version,
                                   out=stage / "firmware.signed.bin")
        run.relocate("build.json")  # it names the image where it will be
    res = replace(res, elf=run.final(res.elf), bin=run.final(res.bin))
    click.echo(f"built {res.elf} for {b.name} ({b.core})")
    click.echo(res.size.table())
    wrote(res.elf)
    if sign_key:
        click.echo(f"signed MCUboot image (linked at 0x{b.flash.origin:08x})")
        wrote(run.final(signed))
