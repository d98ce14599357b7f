import type { NodeDisplayData, RenderParams } from "sigma/types";
import { NodeProgram, type ProgramInfo } from "sigma/rendering";
import { floatColor } from "sigma/utils";

// Shape codes (see shapeCode in ./style): 0 circle, 1 square, 2 triangle, 3 pentagon,
// 4 hexagon, 5 heptagon, 6 octagon, 7 cloud, 8 cylinder, 9 sheet; +16 when stacked.

// Nodes drawn as one point sprite each, the shape computed in the fragment shader from
// a signed distance: no texture to sample, one vertex per node, so software WebGL keeps
// up with pan and zoom where an image atlas program did not (200 nodes: ~117 ms frames
// with the atlas, ~67 ms with dots, in headless Chromium with SwiftShader).

const VERTEX = /* glsl */ `
attribute vec4 a_id;
attribute vec4 a_color;
attribute vec2 a_position;
attribute float a_size;
attribute float a_shape;

uniform float u_sizeRatio;
uniform float u_pixelRatio;
uniform mat3 u_matrix;

varying vec4 v_color;
varying float v_border;
varying float v_shape;
varying float v_stack;

const float bias = 255.0 / 254.0;

void main() {
  gl_Position = vec4((u_matrix * vec3(a_position, 1)).xy, 0, 1);
  gl_PointSize = a_size / u_sizeRatio * u_pixelRatio * 2.0;
  // Half a pixel, in point coordinates, for the antialiased edge.
  v_border = (0.5 / a_size) * u_sizeRatio;
  v_stack = a_shape >= 16.0 ? 1.0 : 0.0;
  v_shape = a_shape - 16.0 * v_stack;
  #ifdef PICKING_MODE
  v_color = a_id;
  #else
  v_color = a_color;
  #endif
  v_color.a *= bias;
}
`;

const FRAGMENT = /* glsl */ `
precision mediump float;

varying vec4 v_color;
varying float v_border;
varying float v_shape;
varying float v_stack;

const float TAU = 6.2831853;

// Distance-like measure of a regular polygon with n sides, 0 at the centre; a point
// is inside when it is below the polygon's apothem.
float polygon(vec2 p, float n, float rotation) {
  float a = atan(p.x, p.y) + rotation;
  float r = TAU / n;
  return cos(floor(0.5 + a / r) * r - a) * length(p);
}

// Positive inside the shape, negative outside; p in [-0.5, 0.5]², y pointing up.
float inside(vec2 p, float shape) {
  if (shape < 0.5) return 0.45 - length(p);
  if (shape < 1.5) return 0.40 - max(abs(p.x), abs(p.y));
  if (shape < 2.5) return 0.24 - polygon(p + vec2(0.0, 0.08), 3.0, 0.0);
  if (shape < 3.5) return 0.38 - polygon(p, 5.0, 0.0);
  if (shape < 4.5) return 0.42 - polygon(p, 6.0, TAU / 12.0);
  if (shape < 5.5) return 0.42 - polygon(p, 7.0, 0.0);
  if (shape < 6.5) return 0.43 - polygon(p, 8.0, TAU / 16.0);
  if (shape < 7.5) {
    // Cloud: three overlapping discs on a flat base.
    float c = max(0.2 - length(p - vec2(-0.17, -0.06)), 0.26 - length(p - vec2(0.05, 0.06)));
    c = max(c, 0.19 - length(p - vec2(0.22, -0.07)));
    return max(c, min(0.26 - abs(p.x), 0.14 - abs(p.y + 0.12)));
  }
  if (shape < 8.5) {
    // Cylinder: a box with rounded top and bottom.
    vec2 q = vec2(p.x / 0.36, (abs(p.y) - 0.26) / 0.12);
    float ends = 1.0 - length(q);
    float body = min(0.36 - abs(p.x), 0.26 - abs(p.y));
    return max(body, ends * 0.12);
  }
  // Sheet: a page with a folded corner.
  float page = min(0.32 - abs(p.x), 0.42 - abs(p.y));
  return min(page, 0.62 - (p.x + p.y));
}

void main(void) {
  vec2 p = gl_PointCoord - vec2(0.5);
  p.y = -p.y;
  float d = inside(v_stack > 0.5 ? (p - vec2(-0.05, -0.05)) * 1.15 : p, v_shape);
  float behind = v_stack > 0.5 ? inside((p - vec2(0.07, 0.07)) * 1.15, v_shape) : -1.0;
  #ifdef PICKING_MODE
  gl_FragColor = (d > 0.0 || behind > 0.0) ? v_color : vec4(0.0);
  #else
  float front = clamp(d / v_border + 0.5, 0.0, 1.0);
  float back = clamp(behind / v_border + 0.5, 0.0, 1.0) * 0.5;
  gl_FragColor = v_color * max(front, back * (1.0 - front));
  #endif
}
`;

const { UNSIGNED_BYTE, FLOAT } = WebGLRenderingContext;

export default class ShapeDotProgram extends NodeProgram<"u_sizeRatio" | "u_pixelRatio" | "u_matrix"> {
  getDefinition() {
    return {
      VERTICES: 1,
      VERTEX_SHADER_SOURCE: VERTEX,
      FRAGMENT_SHADER_SOURCE: FRAGMENT,
      METHOD: WebGLRenderingContext.POINTS,
      UNIFORMS: ["u_sizeRatio", "u_pixelRatio", "u_matrix"] as const,
      ATTRIBUTES: [
        { name: "a_position", size: 2, type: FLOAT },
        { name: "a_size", size: 1, type: FLOAT },
        { name: "a_shape", size: 1, type: FLOAT },
        { name: "a_color", size: 4, type: UNSIGNED_BYTE, normalized: true },
        { name: "a_id", size: 4, type: UNSIGNED_BYTE, normalized: true },
      ],
    };
  }

  processVisibleItem(nodeIndex: number, start: number, data: NodeDisplayData) {
    const array = this.array;
    array[start++] = data.x;
    array[start++] = data.y;
    array[start++] = data.size;
    array[start++] = (data as NodeDisplayData & { shapeCode?: number }).shapeCode ?? 0;
    array[start++] = floatColor(data.color);
    array[start++] = nodeIndex;
  }

  setUniforms({ sizeRatio, pixelRatio, matrix }: RenderParams, { gl, uniformLocations }: ProgramInfo) {
    gl.uniform1f(uniformLocations.u_pixelRatio, pixelRatio);
    gl.uniform1f(uniformLocations.u_sizeRatio, sizeRatio);
    gl.uniformMatrix3fv(uniformLocations.u_matrix, false, matrix);
  }
}
