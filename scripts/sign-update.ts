/**
 * scripts/sign-update: make an update bundle (app/src/system/bundle.ts) from
 * slot images, signed with an Ed25519 private key file; or make a key pair.
 *
 * 1. `--gen-key NAME` writes NAME.key (private, PKCS#8 PEM, mode 0600) and
 *    NAME.pub (public, SPKI PEM). The .pub goes into the image's
 *    rootfs-overlay/usr/share/letterbox/update-keys/; the .key stays with the
 *    release builder, never in the repository (.gitignore: *.key).
 * 2. Building hashes every image, writes the manifest, signs its bytes with
 *    each --key, then copies the images: streaming, any image size.
 */
import { parseArgs } from "node:util";
import { readFile, writeFile, chmod, stat } from "node:fs/promises";
import { buildBundle } from "../app/src/system/bundle.ts";
import { generateSigningKey, parsePrivateKey } from "../app/src/system/keys.ts";

const HELP = `usage: scripts/sign-update --key FILE.key [--key OLD.key] --version V --counter N
                           --board B [--board B2 ...] [--expires DATE | --valid-days D]
                           --image boot=FILE --image root=FILE --out BUNDLE
       scripts/sign-update --gen-key NAME

  --key FILE        Ed25519 private key (PEM); several sign with each (key rotation)
  --version V       version shown to people, e.g. 0.2.0
  --counter N       security counter: devices refuse bundles below their installed one.
                    Raise it when a release fixes a security hole in the one before.
  --board B         rpi3, rpi4, rpi5, qemu-virt (repeat for several)
  --expires DATE    ISO date after which devices refuse the bundle
  --valid-days D    or: expire D days from now (default 365)
  --image NAME=FILE a slot image: boot (FAT) and root (read-only root file system)
  --out BUNDLE      the bundle file to write
  --gen-key NAME    write NAME.key (private, mode 0600) and NAME.pub, then stop
`;

async function main(args: string[]): Promise<number> {
  let v;
  try {
    v = parseArgs({
      args,
      options: {
        key: { type: "string", multiple: true },
        version: { type: "string" },
        counter: { type: "string" },
        board: { type: "string", multiple: true },
        expires: { type: "string" },
        "valid-days": { type: "string" },
        image: { type: "string", multiple: true },
        out: { type: "string" },
        "gen-key": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) {
    process.stderr.write(`sign-update: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (v.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const usage = (msg: string) => {
    process.stderr.write(`sign-update: ${msg}\n\n${HELP}`);
    return 2;
  };
  if (v["gen-key"]) {
    const name = v["gen-key"];
    for (const p of [`${name}.key`, `${name}.pub`]) {
      if (await stat(p).then(() => true, () => false)) return usage(`${p} exists; not overwriting a key`);
    }
    const { privatePem, publicPem } = generateSigningKey();
    await writeFile(`${name}.key`, privatePem, { mode: 0o600, flag: "wx" });
    await chmod(`${name}.key`, 0o600);
    await writeFile(`${name}.pub`, publicPem, { flag: "wx" });
    process.stdout.write(`wrote ${name}.key (keep it secret, out of the repository) and ${name}.pub\n`);
    return 0;
  }
  if (!v.key?.length) return usage("--key is required");
  if (!v.version) return usage("--version is required");
  if (!v.counter || !/^\d+$/.test(v.counter)) return usage("--counter takes a non-negative integer");
  if (!v.board?.length) return usage("--board is required");
  if (!v.image?.length) return usage("--image is required");
  if (!v.out) return usage("--out is required");
  let expires: Date;
  if (v.expires) expires = new Date(v.expires);
  else expires = new Date(Date.now() + Number(v["valid-days"] ?? "365") * 86400_000);
  if (Number.isNaN(expires.getTime())) return usage("--expires is not a date");
  const images = v.image.map((s) => {
    const eq = s.indexOf("=");
    return eq > 0 ? { name: s.slice(0, eq), path: s.slice(eq + 1) } : null;
  });
  if (images.some((i) => i === null)) return usage("--image takes NAME=FILE");
  const keys = [];
  for (const k of v.key) {
    try {
      keys.push(parsePrivateKey(await readFile(k, "utf8")));
    } catch (e) {
      process.stderr.write(`sign-update: ${k}: not an Ed25519 private key (${(e as Error).message})\n`);
      return 1;
    }
  }
  const m = await buildBundle(
    { version: v.version, counter: Number(v.counter), boards: v.board, expires, images: images as { name: string; path: string }[], keys },
    v.out,
  );
  process.stdout.write(`wrote ${v.out}: ${m.version}, counter ${m.counter}, boards ${m.boards.join(" ")}, expires ${m.expires}\n`);
  for (const i of m.images) process.stdout.write(`  ${i.name}: ${i.size} octets, sha256 ${i.sha256}\n`);
  return 0;
}

process.exit(await main(process.argv.slice(2)));
