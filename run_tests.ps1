<#
.SYNOPSIS
    The old entry point, kept for habit: maps -Type to the nox sessions.
.EXAMPLE
    ./run_tests.ps1 -Type e2e
    ./run_tests.ps1 -Type auth -PytestArgs '-k', 'login'
#>
[CmdletBinding()]
param(
    [ValidateSet("unit", "auth", "api", "e2e", "all")]
    [string]$Type = "all",
    [string[]]$PytestArgs = @()
)
$ErrorActionPreference = "Stop"
Set-Location -Path $PSScriptRoot

$sessions = @{
    unit = @("unit")
    auth = @("auth")
    api  = @("api")
    e2e  = @("e2e")
    all  = @("lint", "unit", "auth", "api", "e2e")
}[$Type]

if (-not (Get-Command nox -ErrorAction SilentlyContinue)) {
    Write-Host "nox not found; installing nox and uv with pip"
    python -m pip install --quiet nox uv
    if ($LASTEXITCODE -ne 0) { throw "pip install nox uv failed; install Python 3.11+ and retry" }
}

$arguments = @("--session") + $sessions
if ($PytestArgs.Count -gt 0) { $arguments += @("--") + $PytestArgs }
& nox @arguments
exit $LASTEXITCODE
