/**
 * pgbell's server side (pg, its token signing) runs in Node route handlers, not in a bundle.
 * @type {import('next').NextConfig}
 */
export default {
  serverExternalPackages: ['pgbell', 'pg'],
};
