import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCode, HardwareProfile, VmsimError, validate } from '@vmsim/shared';

/** The hardware profiles shipped with vmsim, as data files next to the package. */
export const PROFILE_NAMES = ['small', 'large'] as const;

export function profilePath(nameOrPath: string): string {
  if ((PROFILE_NAMES as readonly string[]).includes(nameOrPath)) {
    return fileURLToPath(new URL(`../profiles/${nameOrPath}.json`, import.meta.url));
  }
  return nameOrPath;
}

export function loadProfile(nameOrPath: string): HardwareProfile {
  const path = profilePath(nameOrPath);
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    throw new VmsimError(
      ErrorCode.CONFIG,
      `hardware profile "${nameOrPath}" not found (${(e as Error).message}); use ${PROFILE_NAMES.join(' or ')} or a JSON file`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new VmsimError(ErrorCode.CONFIG, `hardware profile ${path} is not JSON: ${(e as Error).message}`);
  }
  return validate(json, HardwareProfile, `hardware profile ${path}`);
}
