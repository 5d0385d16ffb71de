# bash completion for treemig(1)                           -*- shell-script -*-
#
# Completes the commands, the options of each command, the review kinds of
# `review --list`, the log levels, and files or folders where an argument
# names one. Installed as share/bash-completion/completions/treemig; works
# with the bash-completion package (its _filedir quotes file names) and
# without it (compgen). tests/install/test_install.py checks that every
# option of `treemig COMMAND --help` is completed here.

_treemig_commands="discover copy verify review exclude unexclude retry rescan worker delete state-copy resume status ui sim-stats log-listen help"

# The options of a command, from its --help.
_treemig_options()
{
    local log="--log-level --udp-level --log-udp --log-public"
    local sto="--option" # the storages' options (-o KEY=VALUE)
    sto="$sto --s3-endpoint --s3-region --s3-path-style --s3-storage-class" # S3
    sto="$sto --ssh-identity --ssh-known-hosts --ssh-accept-new --ssh-password-env --ssh-config" # SFTP
    case $1 in
        discover) echo "--db --workers --lead --retries --config --exclude --include --exclude-from --include-from --min-size --max-size --max-age --min-age --size-only --checksum --modify-window --allow-pseudo-fs --owner --no-specials --one-file-system --no-xattrs --shared $sto $log --quiet --help" ;;
        copy) echo "--db --yes --workers --retries --no-overwrite --update --backup-dir --owner --force --dry-run --log-file --bwlimit --tps-limit $sto $log --quiet --help" ;;
        verify) echo "--db --checksum --workers --retries --bwlimit --tps-limit $sto $log --quiet --help" ;;
        retry) echo "--db --workers --retries --owner --log-file $sto $log --quiet --help" ;;
        rescan) echo "--db --workers $sto --quiet --help" ;;
        worker) echo "--db --workers --lease --follow --quiet --help" ;;
        delete) echo "--db --plan --yes --backup-dir --quiet --help" ;;
        state-copy) echo "--config --quiet --help" ;;
        resume) echo "--config --workers $sto $log --quiet --help" ;;
        review) echo "--db --top --list --path --reason --json --help" ;;
        exclude) echo "--db --list --from --quiet --help" ;;
        unexclude) echo "--db --quiet --help" ;;
        status) echo "--db --json --help" ;;
        ui) echo "--db --listen --read-only --no-open --help" ;;
        sim-stats) echo "--help" ;;
        log-listen) echo "--public --json --count --migration --help" ;;
    esac
}

# Files (or with -d, folders) matching the word being completed.
_treemig_files()
{
    if declare -F _filedir >/dev/null 2>&1; then
        _filedir "$@"
        return
    fi
    local IFS=$'\n'
    compopt -o filenames 2>/dev/null
    if [[ $1 == -d ]]; then
        COMPREPLY=($(compgen -d -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}

_treemig()
{
    local cur prev cmd i
    COMPREPLY=()
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    # --opt=value: bash splits it at '=' (COMP_WORDBREAKS) into --opt, =, value
    if [[ $cur == = ]]; then
        cur=""
    elif [[ $prev == = && COMP_CWORD -ge 2 ]]; then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    fi

    # the command: the first word after treemig that is not an option
    cmd=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        if [[ ${COMP_WORDS[i]} != -* ]]; then
            cmd=${COMP_WORDS[i]}
            break
        fi
    done
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--help --version" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$_treemig_commands" -- "$cur"))
        fi
        return
    fi

    # the value of an option
    case $prev in
        --db | --log-file)
            _treemig_files
            return ;;
        --config)
            _treemig_files '@(yaml|yml)'
            return ;;
        --list)
            COMPREPLY=($(compgen -W "missing conflict attrs extra failed excluded skipped new changed edited copied all" -- "$cur"))
            return ;;
        --log-level | --udp-level)
            COMPREPLY=($(compgen -W "trace debug info warning error critical off" -- "$cur"))
            return ;;
        --log-udp)
            COMPREPLY=($(compgen -W "127.0.0.1:8081" -- "$cur"))
            return ;;
        --listen)
            COMPREPLY=($(compgen -W "127.0.0.1:8080 127.0.0.1:0 [::1]:8080" -- "$cur"))
            return ;;
        --ssh-identity | --ssh-known-hosts | --ssh-config | --exclude-from | --include-from | --from)
            _treemig_files
            return ;;
        --reason)
            COMPREPLY=($(compgen -W "size mtime dst_newer content type attrs" -- "$cur"))
            return ;;
        --ssh-password-env)
            COMPREPLY=($(compgen -e -- "$cur"))
            return ;;
        --workers | --lead | --retries | --top | --count | --exclude | --include | --path | --option | \
        --min-size | --max-size | --min-age | --max-age | --modify-window | --bwlimit | --tps-limit | --migration)
            return ;;
        --s3-endpoint | --s3-region)
            return ;;
        --s3-storage-class)
            COMPREPLY=($(compgen -W "STANDARD STANDARD_IA ONEZONE_IA INTELLIGENT_TIERING GLACIER_IR GLACIER DEEP_ARCHIVE REDUCED_REDUNDANCY" -- "$cur"))
            return ;;
    esac

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_treemig_options "$cmd")" -- "$cur"))
        return
    fi
    case $cmd in
        help)
            COMPREPLY=($(compgen -W "$_treemig_commands" -- "$cur")) ;;
        discover)
            if [[ $cur == sim:* || $cur == s3:* || $cur == sftp:* ]]; then
                return
            fi
            _treemig_files -d ;;
        sim-stats)
            COMPREPLY=($(compgen -W "sim:" -- "$cur"))
            compopt -o nospace 2>/dev/null ;;
        log-listen)
            COMPREPLY=($(compgen -W "127.0.0.1:8081 localhost:8081 [::1]:8081" -- "$cur")) ;;
    esac
} &&
    complete -F _treemig treemig

# ex: filetype=sh
