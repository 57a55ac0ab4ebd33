// `npx pgbell` runs this project's own command (npm looks at the project's `bin`); `pnpm exec`
// looks only in node_modules/.bin, where pnpm links the commands of dependencies. So, for pnpm
// only, pgbell depends on itself by a link (pnpm's own advice); npm refuses `link:` in
// package.json, hence here.
module.exports = {
  hooks: {
    readPackage(pkg) {
      if (pkg.name === 'pgbell') pkg.devDependencies = { ...pkg.devDependencies, pgbell: 'link:' };
      return pkg;
    },
  },
};
